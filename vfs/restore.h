// Restore: from the objects in a replica location to a database file. Used by the `walship`
// command and by the VFS's auto-restore. Every object's checksum and the database checksum are
// verified; the destination appears only when complete (temp file, fsync, rename).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "walship/s3/store.h"

namespace walship {

struct RestoreOptions {
    std::string output;                    // destination database path
    std::optional<uint64_t> generation;    // default: the latest complete generation
    std::optional<uint64_t> txid;          // default: the latest transaction
    std::optional<int64_t> timestamp_ms;   // the last transaction committed at or before this time
    int parallelism = 8;                   // segment downloads in flight
    std::function<void(uint64_t done, uint64_t total)> progress;  // objects applied / planned
    // Leave an empty database file that a process has open (the command's restore): replacing it
    // would give that process's WAL to the restored file. walship's own restore at open runs
    // before SQLite holds any lock, under the side file's restore lock.
    bool refuse_open = false;
};

struct RestoreInfo {
    uint64_t generation = 0, txid = 0;
    uint32_t page_size = 0, pages = 0;
    uint64_t objects = 0, bytes = 0;
    int64_t last_ts_ms = 0;
    bool checksum_verified = false;
    std::vector<std::string> damaged;  // damaged objects the restore went around (other objects reach the same point)
};

struct GenerationInfo {
    uint64_t id = 0;
    int64_t created_ms = 0;
    uint64_t snapshots = 0, segments = 0, bytes = 0;
    uint64_t first_txid = 0, last_txid = 0;  // from object names
    bool complete = false;                   // has a snapshot
};

// Generations in the location, oldest first. Empty when the replica has no data. `foreign`, when
// given, receives the first key under generations/ that walship does not write (another tool's).
s3::Result<std::vector<GenerationInfo>> list_generations(s3::Store& store, std::string* foreign = nullptr);
// A key under generations/ that walship does not write (a console's folder marker is not one).
bool is_foreign_key(const std::string& key);

// Restores into opts.output. An error for which is_no_replica_data() is true when the location
// holds no walship data at all; any other failure (a missing bucket, a listed object that cannot
// be read, a generation without a snapshot, a point not in the replica) is a plain error.
s3::Result<RestoreInfo> restore(s3::Store& store, const RestoreOptions& opts);
bool is_no_replica_data(const s3::Error& e);
// The temporary file restore() writes for `output` in this process (renamed into place at the end).
std::string restore_temp_name(const std::string& output);

}  // namespace walship
