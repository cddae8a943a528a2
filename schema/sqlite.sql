-- Switchyard's sqlite map (maps/sqlite): the table it reads by default.
-- Owner: the map-modules engineer. Create a database with
--   sqlite3 /var/lib/switchyard/users.db < sqlite.sql
--
-- This is Perdition's SQL map table (tblPerdition: "user", servername, port) plus one
-- optional column, store_user. A table exported from a Perdition MySQL/PostgreSQL database
-- copies over as it is: without a store_user column the module simply never rewrites the
-- login name.
--
-- A lookup is: SELECT servername, port, store_user FROM tblPerdition WHERE "user" = key
-- with the key bound as a parameter. The answer is [store_user@]servername[:port]:
--   "user"      the key: the login name after Switchyard's username policy (exact match)
--   servername  a host name, an address (IPv6 without brackets) or a back-end name
--   port        optional: digits or a service name; NULL or '' = the listener's default
--   store_user  optional: the login to use on the store; NULL or '' = the client's login
--
-- The module opens the file read-only. Keep the default rollback journal
-- (journal_mode=DELETE): a WAL database needs its -shm file, or a writable directory, even
-- for readers. To replace the whole file, write a new one and rename() it over the old;
-- the module notices and reopens.

CREATE TABLE tblPerdition (
  "user"     TEXT PRIMARY KEY NOT NULL,
  servername TEXT NOT NULL,
  port       TEXT,
  store_user TEXT
);

-- Examples:
-- INSERT INTO tblPerdition VALUES ('jane@example.org', 'store1.example.net', '143', NULL);
-- INSERT INTO tblPerdition VALUES ('joe@example.org', 'store2', NULL, NULL);
-- INSERT INTO tblPerdition VALUES ('ann@example.org', '2001:db8::25', '993', NULL);
-- INSERT INTO tblPerdition VALUES ('bob@example.org', 'store3.example.net', NULL, 's0042');
