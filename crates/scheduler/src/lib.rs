//! drover-scheduler
