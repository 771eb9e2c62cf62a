// An mgo application for the capture lab: gopkg.in/mgo.v2, the community Go driver many
// older Go services still run (Debian's golang-gopkg-mgo.v2-dev r2016.08.01, unmodified,
// built in GOPATH mode).
// Usage: mgo_client HOSTS REPLICA_SET SECONDS THREADS EVENTS
// mgo predates the handshake's client metadata and has no monitoring connections: its
// cluster syncs each server (ismaster) every 30 s over a socket taken from that server's
// pool, the same sockets sessions run operations on. Every socket is dialled through
// DialInfo.DialServer, which records its local address and the goroutine's call stack
// (syncServer for the cluster's checks, a session's AcquireSocket for operations).
// Each worker copies the session per request and closes it after, as mgo's docs advise.
package main

import (
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	mgo "gopkg.in/mgo.v2"
	"gopkg.in/mgo.v2/bson"
)

type recorder struct {
	mu     sync.Mutex
	events []map[string]interface{}
	path   string
}

func (r *recorder) dial(addr *mgo.ServerAddr) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		return conn, err
	}
	r.mu.Lock()
	r.events = append(r.events, map[string]interface{}{
		"kind": "socket", "ts": float64(time.Now().UnixNano()) / 1e9,
		"local": conn.LocalAddr().String(), "peer": conn.RemoteAddr().String(),
		"stack": callStack(),
	})
	out, _ := json.Marshal(r.events)
	_ = os.WriteFile(r.path, out, 0o644)
	r.mu.Unlock()
	return conn, nil
}

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[3], 64)
	threads, _ := strconv.Atoi(os.Args[4])
	rec := &recorder{path: os.Args[5]}
	info := &mgo.DialInfo{
		Addrs:          strings.Split(os.Args[1], ","),
		ReplicaSetName: os.Args[2],
		Timeout:        10 * time.Second,
		DialServer:     rec.dial,
	}
	session, err := mgo.DialWithInfo(info)
	if err != nil {
		panic(err)
	}
	until := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(until); i++ {
				s := session.Copy()
				c := s.DB("labdb").C("mgo")
				if err := c.Insert(bson.M{"w": w, "i": i}); err != nil {
					println("insert:", err.Error())
				}
				var docs []bson.M
				if err := c.Find(bson.M{"w": w}).Limit(3).All(&docs); err != nil {
					println("find:", err.Error())
				}
				s.Close()
				time.Sleep(500 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
	session.Close()
}
