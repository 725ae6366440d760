-- The sqlite3 shell with walship:  sqlite3 < example.sql  (run from the build directory,
-- with WALSHIP_REPLICA_URL set, e.g. file:///tmp/replica).
.load ./libwalship
.open app.db
create table if not exists notes(id integer primary key, body text, at text default current_timestamp);
insert into notes(body) values ('written through walship');
select count(*) as notes from notes;
pragma walship_flush;
pragma walship_status;
