#!/usr/bin/perl
# A Perl application (the MongoDB Perl driver, Debian's libmongodb-perl 2.2) for the capture
# lab. The Perl driver is single-threaded: one link per server carries both its topology
# checks and the operations, like libmongoc's mongoc_client_t.
# Usage: perl perl_client.pl URI SECONDS
use strict;
use warnings;
use MongoDB;
use Time::HiRes qw(time sleep);

my ($uri, $seconds) = @ARGV;
my $client = MongoDB::MongoClient->new(host => $uri);
my $coll = $client->ns('labdb.perl');
my $until = time + $seconds;
my $i = 0;
while (time < $until) {
    $coll->insert_one({ i => $i++ });
    my @docs = $coll->find({}, { limit => 3 })->all;
    sleep(0.5);
}
