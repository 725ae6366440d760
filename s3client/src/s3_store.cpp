// S3Store: the Store contract on one bucket and prefix, over S3Client. It only maps the store's
// relative keys to full object keys ("prefix/key") and back; retries, errors, multipart and
// streaming all live in S3Client.
#include "walship/s3/client.h"

namespace walship::s3 {
namespace {

class S3Store : public Store {
public:
    S3Store(const Location& loc, ClientOptions opt) : loc_(loc), client_(loc, std::move(opt)) {
        if (!loc_.prefix.empty()) base_ = loc_.prefix + "/";
    }
    void cancel() override {
        if (client_.options().cancel) client_.options().cancel->store(true);
    }
    void set_interrupt(std::function<bool()> fn) override { client_.set_interrupt(std::move(fn)); }
    StoreWait waiting() const override { return client_.waiting(); }
    void share_waiting(SharedWait* to) override { client_.share_waiting(to); }

    Status put(const std::string& key, const std::string& data, const PutOptions& opt) override {
        return client_.put_object(loc_.bucket, full(key), data, opt);
    }
    Status put_file(const std::string& key, const std::string& path, const PutOptions& opt) override {
        return client_.put_object_file(loc_.bucket, full(key), path, opt);
    }
    std::unique_ptr<ObjectWriter> open_writer(const std::string& key, const PutOptions& opt) override {
        return client_.open_writer(loc_.bucket, full(key), opt);
    }
    Result<std::string> get(const std::string& key, const ByteRange& range) override {
        return client_.get_object(loc_.bucket, full(key), range);
    }
    Status get_stream(const std::string& key, const Sink& sink, const ByteRange& range) override {
        return client_.get_object_stream(loc_.bucket, full(key), sink, range);
    }
    Result<ObjectInfo> head(const std::string& key) override {
        auto r = client_.head_object(loc_.bucket, full(key));
        if (r.ok()) r->key = key;
        return r;
    }
    Status remove(const std::string& key) override { return client_.delete_object(loc_.bucket, full(key)); }
    Status remove_many(const std::vector<std::string>& keys) override {
        std::vector<std::string> full_keys;
        full_keys.reserve(keys.size());
        for (auto& k : keys) full_keys.push_back(full(k));
        return client_.delete_objects(loc_.bucket, full_keys);
    }
    Result<Listing> list(const std::string& prefix, const std::string& delimiter) override {
        auto page = client_.list_objects(loc_.bucket, full(prefix), delimiter);
        if (!page.ok()) return page.error();
        Listing out;
        for (auto& o : page->objects) {
            if (o.key.compare(0, base_.size(), base_) != 0) continue;
            o.key = o.key.substr(base_.size());
            out.objects.push_back(std::move(o));
        }
        for (auto& p : page->common_prefixes)
            if (p.compare(0, base_.size(), base_) == 0) out.common_prefixes.push_back(p.substr(base_.size()));
        return out;
    }
    std::string describe() const override { return loc_.url(); }
    RequestCounts counts() const override { return client_.counts(); }

private:
    std::string full(const std::string& key) const { return base_ + key; }

    Location loc_;
    std::string base_;  // "prefix/" or ""
    S3Client client_;
};

}  // namespace

std::unique_ptr<Store> make_s3_store(const Location& loc, ClientOptions opt) {
    return std::make_unique<S3Store>(loc, std::move(opt));
}

}  // namespace walship::s3
