# A Ruby application (the Ruby driver, Debian's ruby-mongo 2.5) for the capture lab, with
# driver-side truth.
#
# The driver is not modified. Ruby's own ::Socket#connect is wrapped to note, for every
# socket the driver opens, its local address, the opening thread and the driver frames of
# the call stack (the monitor's connection lives in mongo/server/monitor, the pool's in
# mongo/server/connection_pool).
# Usage: ruby ruby_client.rb URI SECONDS THREADS EVENTS
require 'json'
require 'socket'
require 'mongo'

uri, seconds, threads, EVENTS_PATH = ARGV
# The driver's cursor finalizers warn on Ruby 3 ("can't be called from trap context"); the
# warnings say nothing about connections.
$VERBOSE = nil
EVENTS = []
LOCK = Mutex.new

module NoteConnect
  def connect(*args)
    result = super
    begin
      port, host = ::Socket.unpack_sockaddr_in(local_address.to_sockaddr)
      stack = caller_locations.map(&:to_s).select { |f| f.include?('/mongo/') }
        .map { |f| f.sub(%r{.*/mongo/}, 'mongo/') }.first(12)
      LOCK.synchronize do
        EVENTS << { kind: 'socket', local: "#{host}:#{port}", t: Time.now.to_f.round(6),
                    thread: Thread.current.name || Thread.current.inspect, stack: stack.join(' | ') }
        # Written at every socket: the driver's cluster finalizer still connects (to end
        # the sessions) after the script's last line, as the process exits.
        File.write(EVENTS_PATH, JSON.generate(EVENTS))
      end
    rescue StandardError
      nil
    end
    result
  end
end
::Socket.prepend(NoteConnect)

# Debian's ruby-mongo 2.5 parses URIs with URI.decode, which Ruby 3 removed; the client is
# built the other documented way, from a host list and an options hash (as Mongoid
# configurations do). Only the options the lab's URIs use are mapped.
OPTION_NAMES = {
  'replicaSet' => [:replica_set, :to_s], 'appName' => [:app_name, :to_s],
  'heartbeatFrequencyMS' => [:heartbeat_frequency, ->(v) { v.to_f / 1000 }],
  'minPoolSize' => [:min_pool_size, :to_i], 'maxPoolSize' => [:max_pool_size, :to_i],
  'user' => [:user, :to_s], 'password' => [:password, :to_s], 'authSource' => [:auth_source, :to_s],
  'authMechanism' => [:auth_mech, ->(v) { { 'SCRAM-SHA-1' => :scram, 'SCRAM-SHA-256' => :scram256 }.fetch(v) }],
  'connect' => [:connect, :to_sym]
}.freeze

def client_options(uri)
  rest = uri.delete_prefix('mongodb://')
  userinfo, rest = rest.split('@', 2) if rest.include?('@')
  hosts, query = rest.split('?', 2)
  hosts, database = hosts.split('/', 2)
  options = { database: database.to_s.empty? ? 'labdb' : database }
  if userinfo
    options[:user], options[:password] = userinfo.split(':', 2)
  end
  query.to_s.split('&').each do |pair|
    name, value = pair.split('=', 2)
    key, convert = OPTION_NAMES.fetch(name) { raise ArgumentError, "ruby_client.rb: URI option #{name} is not mapped" }
    options[key] = convert.is_a?(Symbol) ? value.send(convert) : convert.call(value)
  end
  [hosts.split(','), options]
end

Mongo::Logger.logger.level = Logger::WARN
hosts, options = client_options(uri)
client = Mongo::Client.new(hosts, options)
coll = client[:ruby]
stop_at = Time.now + seconds.to_f
workers = (1..threads.to_i).map do |w|
  Thread.new do
    i = 0
    while Time.now < stop_at
      begin
        coll.insert_one(w: w, i: i)
        coll.find(w: w).limit(3).first
      rescue Mongo::Error => e
        warn "worker #{w}: #{e.class}: #{e.message}"
      end
      i += 1
      sleep 0.5
    end
  end
end
workers.each(&:join)
client.close
