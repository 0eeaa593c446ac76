//! drover-consensus
