-- Switchyard's pgsql map (maps/pgsql): the table it reads by default.
-- Owner: the map-modules engineer. Create it with, e.g.
--   createuser perdition --pwprompt
--   createdb dbperdition
--   psql -d dbperdition -f pgsql.sql
--   psql -d dbperdition -c 'GRANT SELECT ON "tblperdition" TO perdition'
--
-- This is Perdition's SQL map table. Its name: Perdition's module writes tblPerdition
-- unquoted and PostgreSQL folds unquoted names to lower case, so a Perdition database holds
-- a table called tblperdition. It is created here under that name, so Perdition and
-- Switchyard can share it. Switchyard quotes every identifier exactly as configured and,
-- when the server says a table, schema or column does not exist, tries the names folded to
-- lower case: the default dbtable tblPerdition finds this table, and a table created with
-- the quoted, mixed-case name "tblPerdition" is found under its exact name.
--
-- A lookup, with the options' defaults and the key bound as $1 (never pasted into SQL):
--   SELECT "servername", "port" FROM "tblPerdition" WHERE "user" = $1 LIMIT 1
-- The answer is servername[:port]:
--   "user"      the key: the login name after Switchyard's username policy (exact match;
--               "user" must be quoted: unquoted, user means CURRENT_USER)
--   servername  a host name, an address (IPv6 without brackets) or a back-end name
--   port        optional: digits or a service name; NULL or '' = the listener's default
-- Values are cut at the first blank, as Perdition reads char(n) columns: char(n) works but
-- text or varchar needs no padding.
--
-- The module's sessions are read-only (default_transaction_read_only) with a 5 s
-- statement_timeout: the role it logs in as needs SELECT only.

CREATE TABLE "tblperdition" (
  "user"       text PRIMARY KEY,
  "servername" text NOT NULL,
  "port"       text
);

COMMENT ON TABLE "tblperdition" IS
  'Switchyard/Perdition user map: login name -> servername[:port]';
COMMENT ON COLUMN "tblperdition"."user" IS
  'the key: login name after the username policy, matched exactly';
COMMENT ON COLUMN "tblperdition"."servername" IS
  'host name, address or Switchyard back-end name of the store';
COMMENT ON COLUMN "tblperdition"."port" IS
  'optional port or service name; NULL or empty = the default';

-- The primary key already indexes "user". Case-insensitive logins are better handled by
-- Switchyard's [username] lowercase = true than by lower() here: an index on lower("user")
-- would not serve the plain equality above.
CREATE INDEX "tblperdition_servername" ON "tblperdition" ("servername");  -- "who is on store X?"

-- Examples:
-- INSERT INTO "tblperdition" VALUES ('jane@example.org', 'store1.example.net', '143');
-- INSERT INTO "tblperdition" VALUES ('joe@example.org', 'store2', NULL);
-- INSERT INTO "tblperdition" VALUES ('ann@example.org', '2001:db8::25', '993');

-- The second form of the options: a libpq URI and a query of your own, taking the key as
-- $1 and returning servername[, port[, user]]; a non-empty user replaces the login name
-- towards the store. For instance, aliases in a table of their own:
--
--   CREATE TABLE "aliases" (
--     "alias"      text PRIMARY KEY,
--     "store_user" text NOT NULL,
--     "servername" text NOT NULL,
--     "port"       text
--   );
--   GRANT SELECT ON "aliases" TO perdition;
--
-- with, in switchyard.conf (one line):
--   [[map]]
--   module = "pgsql"
--   options = "postgresql://perdition:secret@db.example.net/dbperdition?connect_timeout=3;statement_timeout=2s;query=SELECT servername, port, store_user FROM aliases WHERE alias = $1"
