//! Hand-made [`Observations`] for unit tests of the pure stages (classify, attribute,
//! report): each test states the behaviour it models instead of replaying a capture.

use super::*;

/// A connection with a captured SYN and nothing else yet.
pub fn conn(id: u64, client: &str, server: &str) -> Observations {
    Observations {
        orientation: Orientation::Syn,
        syn_seen: true,
        opened: Some(1000.0),
        first_seen: 1000.0,
        last_seen: 1030.0,
        ..Observations::new(
            id,
            client.parse().expect("client addr"),
            server.parse().expect("server addr"),
        )
    }
}

impl Observations {
    /// The driver's handshake, as the first hello.
    pub fn with_handshake(mut self, app: &str, driver: &str, version: &str) -> Self {
        self.handshake_ts = Some(self.first_seen);
        self.handshake = Some(Arc::new(Handshake {
            command: "hello".into(),
            app_name: Some(app.into()),
            driver_name: Some(driver.into()),
            driver_version: Some(version.into()),
            ..Handshake::default()
        }));
        self.first_command = Some("hello".into());
        self.hello.requests += 1;
        self.hello.replies += 1;
        self.client_traffic.messages += 1;
        self.server_traffic.messages += 1;
        self.server_info = Some(Arc::new(ServerInfo {
            topology_version: true,
            max_wire_version: Some(21),
            ..ServerInfo::default()
        }));
        self
    }
    /// `n` plain hellos after the handshake, every `every` seconds.
    pub fn with_plain_hellos(mut self, n: u32, every: f64) -> Self {
        for _ in 0..n {
            self.hello.requests += 1;
            self.hello.replies += 1;
            self.hello.request_intervals.add_sample(every);
            self.client_traffic.messages += 1;
            self.server_traffic.messages += 1;
        }
        self
    }
    /// `n` awaitable hellos; with `exhaust`, sent with exhaustAllowed and answered by
    /// `streamed` moreToCome replies.
    pub fn with_awaitable(mut self, n: u32, exhaust: bool, streamed: u32) -> Self {
        self.hello.requests += n;
        self.hello.awaitable += n;
        self.hello.max_await_time_ms = Some(10_000);
        if exhaust {
            self.hello.exhaust_requests += n;
        }
        self.hello.streamed_replies += streamed;
        self.client_traffic.messages += n as u64;
        self.server_traffic.messages += (n + streamed) as u64;
        self
    }
    pub fn with_ops(mut self, name: &str, n: u64) -> Self {
        self.commands.push(CommandCount {
            name: name.into(),
            count: n,
        });
        self.client_traffic.messages += n;
        self.server_traffic.messages += n;
        self
    }
    pub fn with_auth(mut self) -> Self {
        self.auth.attempts = 1;
        self.auth.mechanism = Some("SCRAM-SHA-256".into());
        self
    }
    pub fn without_syn(mut self) -> Self {
        self.syn_seen = false;
        self.opened = None;
        self.orientation = Orientation::Messages;
        self.mid_stream = true;
        self
    }
    pub fn lived(mut self, from: f64, to: Option<f64>) -> Self {
        self.first_seen = from;
        self.opened = self.opened.map(|_| from);
        if self.handshake.is_some() {
            self.handshake_ts = Some(from);
        }
        self.closed = to;
        self.last_seen = to.unwrap_or(self.last_seen.max(from));
        self
    }
}

/// Observations as an analysis holds them (one allocation each).
pub fn boxed(conns: &[Observations]) -> Vec<Box<Observations>> {
    conns.iter().cloned().map(Box::new).collect()
}
