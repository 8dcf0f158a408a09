-- A reader gives up its place in line.
-- KEYS[1] waiting: the readers in line, token → arrival µs.
-- ARGV[1] the reader's token.
-- Answers {1, 0}.
redis.call('ZREM', KEYS[1], ARGV[1])
return {1, 0}
