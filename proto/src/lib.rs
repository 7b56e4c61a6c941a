//! The OpenCensus agent wire format.
