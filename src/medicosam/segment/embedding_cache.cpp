#include "medicosam/segment/embedding_cache.hpp"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/segment/sha1.hpp"

namespace medicosam::segment {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// IEEE 754 binary32 -> binary16, round to nearest even.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff)
    return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | h);
}

std::string describe_size(predict::Size2 s) {
  return std::to_string(s.height) + "x" + std::to_string(s.width);
}

json size_json(predict::Size2 s) {
  return json::array({s.height, s.width});
}

predict::Size2 size_from(const json& j, const std::string& what) {
  if (!j.is_array() || j.size() != 2) throw FormatError(what + " is not [height, width]");
  return {j[0].get<int>(), j[1].get<int>()};
}

void remove_stale_temp_files(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (!name.empty() && name[0] == '.' && name.find(".tmp-") != std::string::npos)
      fs::remove(e.path(), ec);
  }
}

}  // namespace

CacheSpec make_cache_spec(const predict::SamPredictor& predictor, const VolumeSlices& slices) {
  const auto& m = predictor.model();
  CacheSpec s;
  s.data_signature = slices.data_signature();
  s.num_slices = slices.count();
  s.volume = !slices.volume().is_2d();
  s.model_type = m.architecture;
  s.model_name = fs::path(m.path).stem().string();
  s.model_sha1 = sha1_file(m.path);
  s.embedding_shape = {1, m.embedding_channels, m.embedding_size, m.embedding_size};
  s.normalization = io::to_string(slices.normalization());
  s.axis = s.volume ? io::axis_name(slices.axis()) : "";
  s.original_size = slices.model_size();
  s.input_size =
      predict::preprocess_shape(s.original_size.height, s.original_size.width, m.img_size);
  return s;
}

EmbeddingCache::EmbeddingCache(std::string dir, const CacheSpec& spec, const CacheOptions& options)
    : dir_(std::move(dir)) {
  features_ = (fs::path(dir_) / "features").string();
  num_slices_ = spec.num_slices;
  volume_ = spec.volume;
  original_ = spec.original_size;
  input_ = spec.input_size;
  std::error_code ec;
  const bool exists = fs::exists(dir_, ec);
  if (exists && !fs::is_directory(dir_, ec))
    throw InputError("cache '" + dir_ + "' exists and is not a folder");
  const bool empty_dir = exists && fs::is_empty(dir_, ec);
  if (exists && !empty_dir && !zarr::is_group(dir_)) {
    throw InputError("'" + dir_ +
                     "' is not an embedding cache (no zarr group); choose a new or empty folder");
  }
  std::vector<int64_t> shape = spec.embedding_shape, chunks = spec.embedding_shape;
  if (volume_) {
    shape.insert(shape.begin(), spec.num_slices);
    chunks.insert(chunks.begin(), 1);
  }
  const std::string where = "embedding cache '" + dir_ + "'";
  if (exists && !empty_dir) {
    attrs_ = zarr::read_attrs(dir_);
    foreign_ = !attrs_.contains("medicosam");
    const json ms = attrs_.value("medicosam", json::object());
    auto str = [](const json& j, const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    const auto sig = str(attrs_, "data_signature");
    if (!sig.empty() && sig != spec.data_signature) {
      throw InputError(where + " was computed for other data (data signature " + sig + ", this " +
                       (spec.volume ? "volume along " + spec.axis : std::string("image")) +
                       " has " + spec.data_signature + "); use another --cache folder");
    }
    const auto type = str(attrs_, "model_type");
    if (!type.empty() && type != spec.model_type) {
      throw InputError(where + " was computed with a " + type + " model, this model is " +
                       spec.model_type + "; use another --cache folder");
    }
    const auto sha = str(ms, "model_sha1");
    if (!sha.empty() && !spec.model_sha1.empty() && sha != spec.model_sha1) {
      throw InputError(where + " was computed with another checkpoint ('" + str(ms, "model_name") +
                       "', sha1 " + sha.substr(0, 12) + "…, this one '" + spec.model_name + "' " +
                       spec.model_sha1.substr(0, 12) + "…); use another --cache folder");
    }
    for (const char* key : {"tile_shape", "halo"}) {
      if (attrs_.contains(key) && !attrs_[key].is_null()) {
        throw InputError(where + " holds tiled embeddings (" + key + " " + attrs_[key].dump() +
                         "); volumes are cached untiled");
      }
    }
    // micro_sam normalises every slice by its own min and max.
    const std::string norm =
        ms.contains("normalization") ? str(ms, "normalization") : "minmax:slice";
    if (norm != spec.normalization) {
      throw InputError(where + " was computed with normalisation '" + norm + "', requested '" +
                       spec.normalization + "'; pass --normalize " + norm +
                       " or use another --cache folder");
    }
    const auto axis = str(ms, "axis");
    if (!axis.empty() && axis != spec.axis) {
      throw InputError(where + " holds " + axis + " slices, requested " + spec.axis +
                       "; use another --cache folder");
    }
    if (attrs_.contains("original_size") && !attrs_["original_size"].is_null()) {
      const auto orig = size_from(attrs_["original_size"], where + ": original_size");
      if (!(orig == spec.original_size)) {
        throw InputError(where + " holds embeddings of " + describe_size(orig) +
                         " images, the model sees " + describe_size(spec.original_size) + " here");
      }
    }
    if (zarr::is_array(features_)) {
      meta_ = zarr::read_array_meta(features_);
      if (meta_.shape != shape || meta_.chunks != chunks) {
        json a = meta_.shape, b = shape;
        throw InputError(where + ": features have shape " + a.dump() + ", expected " + b.dump() +
                         " for this data and model; use another --cache folder");
      }
      remove_stale_temp_files(features_);
      return;
    }
  }
  // New cache (or an empty group): signature first, features array, no sizes yet (= partial).
  zarr::create_group(dir_);
  attrs_["data_signature"] = spec.data_signature;
  attrs_["tile_shape"] = nullptr;
  attrs_["halo"] = nullptr;
  attrs_["model_type"] = spec.model_type;
  attrs_["medicosam"] = {{"normalization", spec.normalization}, {"axis", spec.axis},
                         {"model_name", spec.model_name},       {"model_sha1", spec.model_sha1},
                         {"slice_count", spec.num_slices},      {"layout", "micro_sam zarr v2"}};
  zarr::write_attrs(dir_, attrs_);
  foreign_ = false;
  meta_.shape = shape;
  meta_.chunks = chunks;
  meta_.dtype = options.fp16 ? "<f2" : "<f4";
  if (!options.compressor.empty()) {
    if (options.compressor != "zlib" && options.compressor != "gzip") {
      throw InputError("unknown cache compressor '" + options.compressor +
                       "' (none, zlib or gzip)");
    }
    meta_.compressor = {{"id", options.compressor}, {"level", 1}};
  }
  zarr::create_array(features_, meta_);
}

EmbeddingCache EmbeddingCache::open_existing(const std::string& dir) {
  EmbeddingCache c;
  c.dir_ = dir;
  c.features_ = (fs::path(dir) / "features").string();
  if (!zarr::is_group(dir) || !zarr::is_array(c.features_)) {
    throw InputError("'" + dir +
                     "' is not an embedding cache (no zarr group with a features array)");
  }
  c.attrs_ = zarr::read_attrs(dir);
  c.foreign_ = !c.attrs_.contains("medicosam");
  c.meta_ = zarr::read_array_meta(c.features_);
  c.volume_ = c.meta_.shape.size() == 5;
  c.num_slices_ = c.volume_ ? static_cast<int>(c.meta_.shape[0]) : 1;
  if (c.attrs_.contains("original_size") && !c.attrs_["original_size"].is_null()) {
    c.original_ = size_from(c.attrs_["original_size"], dir + ": original_size");
    c.input_ = size_from(c.attrs_["input_size"], dir + ": input_size");
  }
  return c;
}

std::vector<int64_t> EmbeddingCache::chunk_index(int z) const {
  std::vector<int64_t> idx(meta_.shape.size(), 0);
  if (volume_) idx[0] = z;
  return idx;
}

bool EmbeddingCache::has(int z) const {
  return zarr::has_chunk(features_, meta_, chunk_index(z));
}

int EmbeddingCache::count_present() const {
  int n = 0;
  for (int z = 0; z < num_slices_; ++z) n += has(z);
  return n;
}

bool EmbeddingCache::complete() const {
  return attrs_.contains("input_size") && !attrs_["input_size"].is_null() &&
         count_present() == num_slices_;
}

predict::Embedding EmbeddingCache::load(int z) const {
  if (z < 0 || z >= num_slices_) {
    throw InputError("slice " + std::to_string(z) + " is outside the cache's 0.." +
                     std::to_string(num_slices_ - 1));
  }
  auto bytes = zarr::read_chunk(features_, meta_, chunk_index(z));
  if (!bytes) {
    throw InputError("slice " + std::to_string(z) + " is missing from embedding cache '" + dir_ +
                     "' (run `medicosam embed` to complete it)");
  }
  NpyArray a;
  a.type = meta_.dtype == "<f2" ? NpyType::kFloat16 : NpyType::kFloat32;
  a.shape.assign(meta_.chunks.end() - 4, meta_.chunks.end());
  a.data = std::move(*bytes);
  return predict::Embedding::from_npy(a, original_, input_);
}

void EmbeddingCache::store(int z, const predict::Embedding& e) {
  const auto a = e.to_npy();
  const std::vector<int64_t> expect(meta_.chunks.end() - 4, meta_.chunks.end());
  if (a.shape != expect)
    throw InputError("embedding of shape " + a.shape_string() + " does not fit the cache");
  if (!(e.original_size() == original_) || !(e.input_size() == input_)) {
    throw InputError("embedding of a " + describe_size(e.original_size()) +
                     " image does not fit the cache (" + describe_size(original_) + ")");
  }
  std::vector<uint8_t> bytes;
  if (meta_.dtype == "<f2") {
    const float* f = a.as<float>();
    bytes.resize(static_cast<size_t>(a.numel()) * 2);
    auto* h = reinterpret_cast<uint16_t*>(bytes.data());
    for (int64_t i = 0; i < a.numel(); ++i) h[i] = float_to_half(f[i]);
  } else {
    bytes = a.data;
  }
  zarr::write_chunk(features_, meta_, chunk_index(z), bytes);
}

void EmbeddingCache::mark_complete() {
  attrs_["input_size"] = size_json(input_);
  attrs_["original_size"] = size_json(original_);
  zarr::write_attrs(dir_, attrs_);
}

EmbedStats compute_embeddings(const predict::SamPredictor& predictor, const VolumeSlices& slices,
                              EmbeddingCache& cache, bool progress) {
  EmbedStats st;
  std::vector<int> todo;
  for (int z = 0; z < slices.count(); ++z) {
    if (cache.has(z)) {
      ++st.reused;
    } else {
      todo.push_back(z);
    }
  }
  if (!todo.empty()) {
    Progress bar(slices.count(), "embedding " + std::to_string(slices.count()) + " slices",
                 progress, st.reused);
    for (int z : todo) {
      const auto img = slices.model_image(z);
      const auto t0 = std::chrono::steady_clock::now();
      const auto e = predictor.encode(img.data.data(), img.height, img.width, 3);
      st.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      cache.store(z, e);
      ++st.computed;
      bar.advance();
    }
    bar.finish();
  }
  if (!cache.complete()) cache.mark_complete();
  return st;
}

CachedSliceSegmenter::CachedSliceSegmenter(predict::SamPredictor& predictor,
                                           const EmbeddingCache& cache)
    : predictor_(predictor), cache_(cache) {}

predict::Prediction CachedSliceSegmenter::predict(int z, const predict::Prompt& prompt,
                                                  bool multimask_output) {
  if (z != current_) {
    predictor_.set_embedding(cache_.load(z));
    current_ = z;
  }
  return predictor_.predict(prompt, multimask_output);
}

std::vector<predict::Prediction> CachedSliceSegmenter::predict_many(const std::vector<Request>& requests,
                                                                    bool multimask_output) {
  if (requests.size() == 1) return {predict(requests[0].z, requests[0].prompt, multimask_output)};
  std::vector<predict::Embedding> embeddings;
  std::vector<predict::Prompt> prompts;
  for (const auto& r : requests) {
    embeddings.push_back(r.z == current_ ? predictor_.embedding() : cache_.load(r.z));
    prompts.push_back(r.prompt);
  }
  return predictor_.predict_each(embeddings, prompts, multimask_output);
}

}  // namespace medicosam::segment

namespace medicosam::segment {

EmbeddingCache open_cache(const predict::SamPredictor& predictor, VolumeSlices& slices,
                          const std::string& dir, const CacheOptions& options) {
  if (slices.resampled() && zarr::is_group(dir)) {
    const auto attrs = zarr::read_attrs(dir);
    if (attrs.contains("original_size") && attrs["original_size"].is_array() &&
        attrs["original_size"].size() == 2) {
      const predict::Size2 orig{attrs["original_size"][0].get<int>(),
                                attrs["original_size"][1].get<int>()};
      if (orig == slices.slice_size()) slices.use_slice_grid();
    }
  }
  return EmbeddingCache(dir, make_cache_spec(predictor, slices), options);
}

}  // namespace medicosam::segment
