#!/usr/bin/env bash
# Regenerate the lab's captures and truth files: testdata/lab/<case>/.
# Installs what it needs when missing (tcpdump, editcap, the drivers), then runs every case
# (or the ones named): scripts/lab/record-all.sh [CASE ...]
# All traffic stays on 127.0.0.0/8; every process is bounded in time and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v editcap >/dev/null || need+=(tshark)
command -v php >/dev/null || need+=(php-cli)
dpkg-query -W -f='${Status}' php-mongodb 2>/dev/null | grep -q "ok installed" || need+=(php-mongodb)
dpkg-query -W -f='${Status}' libmongoc-dev 2>/dev/null | grep -q "ok installed" || need+=(libmongoc-dev)
command -v node >/dev/null || need+=(nodejs npm)
command -v gcc >/dev/null || need+=(gcc)
command -v openssl >/dev/null || need+=(openssl)  # the TLS cases generate a CA per run
# sslkeylog.so (the key log of the OpenSSL-based drivers in the TLS cases) builds against it.
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q "ok installed" || need+=(libssl-dev)
# The Java driver 3.6: Debian's package, compiled against with the JDK.
command -v javac >/dev/null || need+=(default-jdk-headless)
dpkg-query -W -f='${Status}' libmongodb-java 2>/dev/null | grep -q "ok installed" || need+=(libmongodb-java)
# The Go driver: Debian's packaged source (1.8.4), built in GOPATH mode with Debian's Go.
command -v go >/dev/null || need+=(golang-go)
dpkg-query -W -f='${Status}' golang-mongodb-mongo-driver-dev 2>/dev/null | grep -q "ok installed" || need+=(golang-mongodb-mongo-driver-dev)
# mgo (gopkg.in/mgo.v2), the community Go driver: Debian's packaged source, like the Go driver.
dpkg-query -W -f='${Status}' golang-gopkg-mgo.v2-dev 2>/dev/null | grep -q "ok installed" || need+=(golang-gopkg-mgo.v2-dev)
# The Ruby driver 2.5 and the Perl driver 2.2: Debian's packages (Ruby and Perl come with them).
dpkg-query -W -f='${Status}' ruby-mongo 2>/dev/null | grep -q "ok installed" || need+=(ruby-mongo)
dpkg-query -W -f='${Status}' libmongodb-perl 2>/dev/null | grep -q "ok installed" || need+=(libmongodb-perl)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Drivers: pinned, from the registries, unmodified.
[[ -x .venv/bin/python ]] || { python3 -m venv .venv && .venv/bin/pip install -q "pymongo==4.20.1" python-snappy zstandard; }
# PyMongo 4.10 still accepts a 4.2 server (wire version 8); 4.20 needs 4.4.
[[ -x .venv-old/bin/python ]] || { python3 -m venv .venv-old && .venv-old/bin/pip install -q "pymongo==4.10.1" python-snappy zstandard; }
# PyMongo 3.13, the last 3.x: still in many applications.
[[ -x .venv-pymongo3/bin/python ]] || { python3 -m venv .venv-pymongo3 && .venv-pymongo3/bin/pip install -q "pymongo==3.13.0"; }
[[ -d node/node_modules/mongodb ]] || (cd node && npm install --no-audit --no-fund -s >/dev/null)
# Older majors of the Node.js driver, each in its own folder: 3.7 (legacy topology by
# default), 4.17 (the first with only the unified topology), 6.22; and Mongoose 8 and 5
# (the driver 6.12 and 3.7 underneath); mongosh 2.12, the MongoDB Shell (the driver 7.x).
for major in node3 node4 node6 mongoose mongoose5 mongosh; do
  [[ -d $major/node_modules/mongodb ]] || (cd $major && npm install --no-audit --no-fund -s >/dev/null)
done
mkdir -p build
gcc -O1 -o build/mongoc_client clients/mongoc_client.c $(pkg-config --cflags --libs libmongoc-1.0) -lpthread
gcc -shared -fPIC -o build/bindsrc.so bindsrc.c -ldl
gcc -shared -fPIC -Wall -o build/sslkeylog.so sslkeylog.c -lssl -lcrypto -ldl -lpthread
javac -d build/java -cp /usr/share/java/mongo-java-driver.jar clients/java/JavaClient.java
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-/tmp/conn-attrib-lab-gocache}" go build -o build/go_client clients/go_client.go clients/callstack.go
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-/tmp/conn-attrib-lab-gocache}" go build -o build/mgo_client clients/mgo_client.go clients/callstack.go
# The Rust driver from crates.io, pinned by clients/rust_client/Cargo.lock (a few minutes the first time).
[[ -x build/rust_client ]] || { CARGO_TARGET_DIR=build/rust-target cargo build -q --release --locked --manifest-path clients/rust_client/Cargo.toml && cp build/rust-target/release/rust_client build/; }
exec python3 lab.py "$@"
