<?php
// A PHP application (ext-mongodb, single-threaded libmongoc underneath) for the capture lab.
// Usage: php php_client.php URI SECONDS
$uri = $argv[1];
$until = microtime(true) + floatval($argv[2]);
$manager = new MongoDB\Driver\Manager($uri);
$i = 0;
while (microtime(true) < $until) {
    $bulk = new MongoDB\Driver\BulkWrite();
    $bulk->insert(['i' => $i++]);
    $manager->executeBulkWrite('labdb.php', $bulk);
    $cursor = $manager->executeQuery('labdb.php', new MongoDB\Driver\Query([], ['limit' => 3]));
    foreach ($cursor as $doc) {}
    usleep(500000);
}
