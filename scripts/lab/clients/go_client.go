// A MongoDB Go driver application for the capture lab.
// Usage: go_client URI SECONDS THREADS EVENTS
// The driver is Debian's golang-mongodb-mongo-driver-dev, unmodified, built in GOPATH mode.
// Every socket the driver dials goes through the client's dialer, which records its local
// address and the goroutine's call stack (the driver's monitor, RTT monitor or pool opened
// it) into EVENTS as JSON, like the Node.js client's stacks.
// With LAB_KEYLOG set (TLS cases), the TLS configuration the driver built from the URI
// gets a KeyLogWriter: crypto/tls writes the session secrets there (SSLKEYLOGFILE format).
// Truth comes from the test server's log and the driver's documented design (a streaming
// monitor plus an RTT monitor per server against 4.4+ servers, a polling monitor
// otherwise, and the pool); the pool events it prints ("cmap-created address") back the
// pool count.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// A dialer that notes which driver code opened each socket.
type labDialer struct {
	net.Dialer
	mu     sync.Mutex
	events []map[string]interface{}
}

func (d *labDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return conn, err
	}
	d.mu.Lock()
	d.events = append(d.events, map[string]interface{}{
		"kind": "socket", "ts": float64(time.Now().UnixNano()) / 1e9,
		"local": conn.LocalAddr().String(), "peer": conn.RemoteAddr().String(),
		"stack": callStack(),
	})
	d.mu.Unlock()
	return conn, err
}

func (d *labDialer) write(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, _ := json.Marshal(d.events)
	_ = os.WriteFile(path, out, 0o644)
}

func main() {
	uri := os.Args[1]
	seconds, _ := strconv.ParseFloat(os.Args[2], 64)
	threads := 1
	if len(os.Args) > 3 {
		threads, _ = strconv.Atoi(os.Args[3])
	}
	until := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	monitor := &event.PoolMonitor{Event: func(e *event.PoolEvent) {
		if e.Type == event.ConnectionCreated {
			fmt.Printf("cmap-created %s %d\n", e.Address, e.ConnectionID)
		}
	}}
	ctx := context.Background()
	dialer := &labDialer{}
	opts := options.Client().ApplyURI(uri).SetPoolMonitor(monitor).SetDialer(dialer)
	if path := os.Getenv("LAB_KEYLOG"); path != "" && opts.TLSConfig != nil {
		keylog, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "key log:", err)
			os.Exit(2)
		}
		opts.TLSConfig.KeyLogWriter = keylog
	}
	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for n := 0; n < threads; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			coll := client.Database("labdb").Collection(fmt.Sprintf("go_%d", n))
			for i := 0; time.Now().Before(until); i++ {
				if _, err := coll.InsertOne(ctx, bson.M{"i": i}); err != nil {
					fmt.Fprintln(os.Stderr, "insert:", err)
				}
				cur, err := coll.Find(ctx, bson.M{}, options.Find().SetLimit(3))
				if err == nil {
					var docs []bson.M
					_ = cur.All(ctx, &docs)
				} else {
					fmt.Fprintln(os.Stderr, "find:", err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}(n)
	}
	wg.Wait()
	// Keep the client (and its connections) alive to the end of the window.
	time.Sleep(time.Until(until))
	if len(os.Args) > 4 {
		dialer.write(os.Args[4])
	}
	os.Exit(0)
}
