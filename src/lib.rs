//! conn-attrib: attribute every MongoDB client connection in a packet capture to its driver role.
pub mod wire;
