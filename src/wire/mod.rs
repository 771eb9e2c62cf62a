//! MongoDB wire protocol (placeholder until the wire stage lands).
