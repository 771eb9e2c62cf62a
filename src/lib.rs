//! conn-attrib: attribute every MongoDB client connection in a packet capture to its driver role.
pub mod capture;
pub mod net;
pub mod tcp;
pub mod wire;
