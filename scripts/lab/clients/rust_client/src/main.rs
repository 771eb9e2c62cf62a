//! A MongoDB Rust driver application for the capture lab.
//! Usage: rust_client URI SECONDS THREADS
//! The driver comes from crates.io, unmodified. Truth comes from the test server's log
//! and the driver's documented design (a streaming monitor plus an RTT monitor per
//! server against 4.4+ servers, a polling monitor otherwise, and the pool); the CMAP
//! events it prints ("cmap-created address") back the pool count.
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::event::cmap::CmapEvent;
use mongodb::options::ClientOptions;
use mongodb::Client;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> mongodb::error::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let uri = &args[1];
    let seconds: f64 = args[2].parse().expect("SECONDS");
    let threads: usize = args.get(3).map(|t| t.parse().expect("THREADS")).unwrap_or(1);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut options = ClientOptions::parse(uri).await?;
    options.cmap_event_handler = Some(mongodb::event::EventHandler::callback(|e: CmapEvent| {
        if let CmapEvent::ConnectionCreated(c) = e {
            println!("cmap-created {} {}", c.address, c.connection_id);
        }
    }));
    let client = Client::with_options(options)?;
    let mut workers = Vec::new();
    for n in 0..threads {
        let coll = client.database("labdb").collection::<Document>(&format!("rust_{n}"));
        workers.push(tokio::spawn(async move {
            let mut i = 0i32;
            while Instant::now() < until {
                if let Err(e) = coll.insert_one(doc! { "i": i }).await {
                    eprintln!("insert: {e}");
                }
                i += 1;
                match coll.find(doc! {}).limit(3).await {
                    Ok(cursor) => {
                        let _: Vec<Document> = cursor.try_collect().await.unwrap_or_default();
                    }
                    Err(e) => eprintln!("find: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    // Keep the client (and its connections) alive to the end of the window.
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    std::process::exit(0);
}
