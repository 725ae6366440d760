// Retention planning (see retention.h).
#include "retention.h"

#include <algorithm>
#include <map>

namespace walship {

std::vector<ListedObject> parse_listing(const std::vector<s3::ObjectInfo>& objects) {
    std::vector<ListedObject> out;
    for (auto& o : objects) {
        auto k = parse_key(o.key);
        if (k) out.push_back({o.key, *k, o.size});
    }
    return out;
}

std::string find_second_writer(const std::vector<ListedObject>& objects, uint64_t generation) {
    std::vector<const ListedObject*> segs;
    for (auto& o : objects)
        if (o.k.gen == generation && !o.k.snapshot) segs.push_back(&o);
    std::sort(segs.begin(), segs.end(), [](auto* a, auto* b) { return a->k.first != b->k.first ? a->k.first < b->k.first : a->k.last > b->k.last; });
    std::vector<const ListedObject*> open;  // the ranges containing the current one, outermost first
    for (auto* s : segs) {
        while (!open.empty() && open.back()->k.last < s->k.first) open.pop_back();
        if (!open.empty()) {
            const ParsedKey& top = open.back()->k;
            if ((top.first == s->k.first && top.last == s->k.last) || s->k.last > top.last) return s->key;
        }
        open.push_back(s);
    }
    return "";
}

std::vector<std::string> plan_retention(const std::vector<ListedObject>& objects, int64_t keep_from_ms, uint64_t current_generation,
                                        int64_t absorbed_before_ms) {
    std::map<uint64_t, std::vector<const ListedObject*>> gens;
    for (auto& o : objects) gens[o.k.gen].push_back(&o);
    std::vector<std::string> drop;
    // A snapshot in parts exists once its .snap object does (it is written last).
    auto complete = [](const std::vector<const ListedObject*>& objs) {
        return std::any_of(objs.begin(), objs.end(), [](auto* o) { return o->k.snapshot && !o->k.part; });
    };
    for (auto it = gens.begin(); it != gens.end(); ++it) {
        uint64_t gen = it->first;
        auto next = std::next(it);
        // A generation serves points from its creation until the next one that can be restored
        // (one that never got its snapshot, say its process died during it, serves none).
        auto serving = next;
        while (serving != gens.end() && !complete(serving->second)) ++serving;
        int64_t next_created = serving == gens.end() ? INT64_MAX : int64_t(serving->first >> 16);
        bool has_snapshot = complete(it->second);
        if (gen != current_generation && next != gens.end() && (next_created <= keep_from_ms || !has_snapshot)) {
            // It serves only points before the window, or none (it never got its snapshot).
            for (auto* o : it->second) drop.push_back(o->key);
            continue;
        }
        // Within a generation: the newest snapshot at or before the window's start is the base
        // for the oldest point still wanted; older snapshots and the segments before it can go.
        int64_t from = std::max<int64_t>(keep_from_ms, int64_t(gen >> 16));
        const ListedObject* base = nullptr;
        for (auto* o : it->second)
            if (o->k.snapshot && !o->k.part && int64_t(o->k.ts_ms) <= from && (!base || o->k.first > base->k.first)) base = o;
        auto same_snapshot = [](const ListedObject* a, const ListedObject* b) {
            return a->k.snapshot && b->k.snapshot && a->k.first == b->k.first && a->k.ts_ms == b->k.ts_ms;
        };
        for (auto* o : it->second) {
            // (A snapshot taken later at the same txid, or its parts, stays.)
            if (base && !same_snapshot(o, base) && o->k.last <= base->k.first && !(o->k.snapshot && o->k.ts_ms > base->k.ts_ms)) {
                drop.push_back(o->key);
                continue;
            }
            if (o->k.part) {
                // Parts of a snapshot whose .snap object never came (the upload failed or the
                // process died) once a later snapshot of this generation is complete.
                bool complete = false, superseded = false;
                for (auto* p : it->second) {
                    if (!p->k.snapshot || p->k.part) continue;
                    complete = complete || same_snapshot(o, p);
                    superseded = superseded || p->k.first > o->k.first || (p->k.first == o->k.first && p->k.ts_ms > o->k.ts_ms);
                }
                if (!complete && superseded) drop.push_back(o->key);
                continue;
            }
            if (o->k.snapshot) continue;
            // A segment inside a larger one (a compaction whose inputs were not yet deleted).
            for (auto* p : it->second)
                if (p != o && !p->k.snapshot && p->k.first <= o->k.first && p->k.last >= o->k.last &&
                    (p->k.last - p->k.first > o->k.last - o->k.first) && int64_t(p->k.ts_ms) < absorbed_before_ms) {
                    drop.push_back(o->key);
                    break;
                }
        }
    }
    std::sort(drop.begin(), drop.end());
    drop.erase(std::unique(drop.begin(), drop.end()), drop.end());
    return drop;
}

}  // namespace walship
