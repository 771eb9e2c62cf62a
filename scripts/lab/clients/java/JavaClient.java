// A MongoDB Java driver application for the capture lab.
// Usage: java -cp ... JavaClient URI SECONDS THREADS EVENTS
// The driver is Debian's libmongodb-java (3.6.3), unmodified. Every socket the driver opens
// comes from the client's SocketFactory, which records the local address and the name of
// the thread that connected it (the driver's monitor threads are named "cluster-...") into
// EVENTS as JSON; the server's log adds what each connection carried. With ssl=true in the
// URI the factory hands out the JVM's TLS sockets (JSSE, the trust store given with
// -Djavax.net.ssl.trustStore) and records each one's thread, protocol and cipher suite
// when its handshake completes.
import com.mongodb.MongoClient;
import com.mongodb.MongoClientOptions;
import com.mongodb.MongoClientURI;
import com.mongodb.client.MongoCollection;
import org.bson.Document;

import javax.net.SocketFactory;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;
import java.io.FileWriter;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.util.ArrayList;
import java.util.List;

public class JavaClient {
    static final List<String> events = new ArrayList<>();

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    /** A plain socket that notes who connected it. */
    static class LabSocket extends Socket {
        @Override
        public void connect(SocketAddress endpoint, int timeout) throws IOException {
            super.connect(endpoint, timeout);
            note(this, Thread.currentThread().getName(), null);
        }
    }

    static void note(Socket s, String thread, String tls) {
        InetSocketAddress local = (InetSocketAddress) s.getLocalSocketAddress();
        InetSocketAddress peer = (InetSocketAddress) s.getRemoteSocketAddress();
        String e = "{\"kind\":\"socket\",\"ts\":" + (System.currentTimeMillis() / 1000.0)
            + ",\"local\":" + quote(local.getAddress().getHostAddress() + ":" + local.getPort())
            + ",\"peer\":" + quote(peer.getAddress().getHostAddress() + ":" + peer.getPort())
            + ",\"thread\":" + quote(thread) + (tls == null ? "" : "," + tls) + "}";
        synchronized (events) {
            events.add(e);
        }
    }

    /** JSSE sockets, noted when their handshake completes (on whichever thread). */
    static class LabTlsSocketFactory extends SSLSocketFactory {
        final SSLSocketFactory jsse = (SSLSocketFactory) SSLSocketFactory.getDefault();

        Socket watch(Socket s) {
            String thread = Thread.currentThread().getName();
            ((SSLSocket) s).addHandshakeCompletedListener(ev -> note(ev.getSocket(), thread,
                "\"tls\":" + quote(ev.getSession().getProtocol()) + ",\"cipher\":" + quote(ev.getCipherSuite())));
            return s;
        }
        public Socket createSocket() throws IOException { return watch(jsse.createSocket()); }
        public Socket createSocket(Socket s, String h, int p, boolean c) throws IOException { return watch(jsse.createSocket(s, h, p, c)); }
        public Socket createSocket(String h, int p) throws IOException { return watch(jsse.createSocket(h, p)); }
        public Socket createSocket(String h, int p, InetAddress la, int lp) throws IOException { return watch(jsse.createSocket(h, p, la, lp)); }
        public Socket createSocket(InetAddress h, int p) throws IOException { return watch(jsse.createSocket(h, p)); }
        public Socket createSocket(InetAddress h, int p, InetAddress la, int lp) throws IOException { return watch(jsse.createSocket(h, p, la, lp)); }
        public String[] getDefaultCipherSuites() { return jsse.getDefaultCipherSuites(); }
        public String[] getSupportedCipherSuites() { return jsse.getSupportedCipherSuites(); }
    }

    static class LabSocketFactory extends SocketFactory {
        public Socket createSocket() { return new LabSocket(); }
        public Socket createSocket(String h, int p) throws IOException { Socket s = createSocket(); s.connect(new InetSocketAddress(h, p)); return s; }
        public Socket createSocket(String h, int p, InetAddress la, int lp) throws IOException { return createSocket(h, p); }
        public Socket createSocket(InetAddress h, int p) throws IOException { Socket s = createSocket(); s.connect(new InetSocketAddress(h, p)); return s; }
        public Socket createSocket(InetAddress h, int p, InetAddress la, int lp) throws IOException { return createSocket(h, p); }
    }

    public static void main(String[] args) throws Exception {
        String uri = args[0];
        long until = System.currentTimeMillis() + (long) (Double.parseDouble(args[1]) * 1000);
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 1;
        boolean tls = uri.contains("ssl=true");
        MongoClientOptions.Builder options = MongoClientOptions.builder()
            .socketFactory(tls ? new LabTlsSocketFactory() : new LabSocketFactory());
        MongoClient client = new MongoClient(new MongoClientURI(uri, options));
        List<Thread> workers = new ArrayList<>();
        for (int n = 0; n < threads; n++) {
            MongoCollection<Document> coll = client.getDatabase("labdb").getCollection("java_" + n);
            Thread t = new Thread(() -> {
                int i = 0;
                while (System.currentTimeMillis() < until) {
                    try {
                        coll.insertOne(new Document("i", i++));
                        coll.find().limit(3).into(new ArrayList<>());
                    } catch (Exception e) {
                        System.err.println("op: " + e);
                    }
                    try { Thread.sleep(500); } catch (InterruptedException e) { return; }
                }
            }, "lab-worker-" + n);
            t.start();
            workers.add(t);
        }
        for (Thread t : workers) t.join();
        // Keep the client (and its connections) alive to the end of the window.
        long left = until - System.currentTimeMillis();
        if (left > 0) Thread.sleep(left);
        if (args.length > 3) {
            try (FileWriter out = new FileWriter(args[3])) {
                synchronized (events) {
                    out.write("[" + String.join(",", events) + "]");
                }
            }
        }
        Runtime.getRuntime().halt(0);
    }
}
