//! drover-node
