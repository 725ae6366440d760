// Retention and compaction planning: which objects of a replica may go, and how small segments
// merge into larger ones. Pure functions over listings (see docs/DESIGN.md, "Long-running
// replicas").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format.h"
#include "walship/s3/store.h"

namespace walship {

struct ListedObject {
    std::string key;
    ParsedKey k;
    uint64_t size = 0;
};

// Parses a listing of generations/ into walship objects (others are ignored).
std::vector<ListedObject> parse_listing(const std::vector<s3::ObjectInfo>& objects);

// The keys retention deletes: everything not needed to restore the latest state or any point at or
// after `keep_from_ms`. The current generation is never deleted as a whole; objects whose range a
// larger segment covers are deleted too.
// A segment of `generation` that one writer could not have written: one writer's segments form a
// laminar family of txid ranges (a merged segment covers whole segments, later segments start
// after it, a retried upload keeps its name), so a second object with the same range, or a range
// that crosses another, means a second writer appends to the generation. Its key, or "".
std::string find_second_writer(const std::vector<ListedObject>& objects, uint64_t generation);

// absorbed_before_ms: a segment inside a larger one (which a merge absorbed) is dropped only once
// that larger one's time is before it, so a restore planned before the merge can still read it.
std::vector<std::string> plan_retention(const std::vector<ListedObject>& objects, int64_t keep_from_ms, uint64_t current_generation,
                                        int64_t absorbed_before_ms = INT64_MAX);

}  // namespace walship
