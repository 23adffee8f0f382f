//! Loss recovery and congestion control (RFC 9002, RFC 9438): RTT estimation,
//! sent-packet tracking, loss detection, probe timeouts, ACK scheduling, pacing.

pub(crate) mod ack;
pub(crate) mod cc;
#[cfg(feature = "cubic")]
pub(crate) mod cubic;
pub(crate) mod loss;
pub(crate) mod newreno;
pub(crate) mod pacer;
pub(crate) mod rtt;

pub use cc::{CongestionAlgorithm, CongestionControl};
pub use rtt::RttEstimator;
