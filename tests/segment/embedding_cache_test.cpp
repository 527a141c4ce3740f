// The embedding cache: SHA-1, the zarr store, micro_sam-compatible layout and
// signature, refusal of foreign caches, fp16, interoperability with a second
// implementation (zarr-python, as micro_sam uses) in another process, and
// resuming an embedding run that was killed.
#include "medicosam/segment/embedding_cache.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "medicosam/core/error.hpp"
#include "medicosam/core/npy.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "medicosam/segment/sha1.hpp"
#include "medicosam/segment/zarr.hpp"

namespace medicosam::segment {
namespace {
namespace fs = std::filesystem;

const std::string kShared = MEDICOSAM_SHARED_DIR;
const std::string kModel = kShared + "/fixtures/sam_parity/sam_tiny_seed0.pth";

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("medicosam_cache_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

predict::SamPredictor& tiny_model() {
  static predict::SamPredictor p(kModel, {2, "cpu"});
  return p;
}

// A small int16 volume with a bright blob, LPS-ordered (axial slice k = array z).
io::Volume small_volume(int nx, int ny, int nz, int seed = 0) {
  io::Geometry g;
  g.size = {nx, ny, nz};
  g.spacing = {0.8, 0.8, 3.0};
  io::Volume v(io::PixelType::kInt16, g);
  Rng rng(static_cast<uint64_t>(seed) + 7);
  for (int z = 0; z < nz; ++z)
    for (int y = 0; y < ny; ++y)
      for (int x = 0; x < nx; ++x) {
        const double d = std::hypot(x - nx / 2.0, y - ny / 2.0);
        v.set_value(x, y, z, 0, (d < nx / 4.0 ? 800 : 100) + rng.uniform_int(50) + 10 * z);
      }
  return v;
}

bool have_python_zarr() {
  static const bool ok =
      std::system("/usr/bin/python3 -c 'import zarr, numcodecs, nibabel' >/dev/null 2>&1") == 0;
  return ok;
}

int run_python(const std::string& script, const std::string& dir) {
  const std::string path = dir + "/script.py";
  std::ofstream(path) << script;
  return std::system(("/usr/bin/python3 " + path).c_str());
}

std::vector<float> floats(const NpyArray& a) {
  return a.to_float();
}

TEST(Sha1, KnownVectors) {
  Sha1 a;
  EXPECT_EQ(a.hex_digest(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  Sha1 b;
  b.update("abc", 3);
  EXPECT_EQ(b.hex_digest(), "a9993e364706816aba3e25717850c26c9cd0d89d");
  Sha1 c;  // fed in odd pieces across block boundaries
  const std::string s = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  for (size_t i = 0; i < s.size(); i += 7)
    c.update(s.data() + i, std::min<size_t>(7, s.size() - i));
  EXPECT_EQ(c.hex_digest(), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

TEST(ZarrStore, ChunksRoundTripWithEveryCodecAndRejectCorruption) {
  TempDir tmp;
  std::vector<uint8_t> bytes(2 * 3 * 4 * 4);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  for (std::string codec : {"", "zlib", "gzip"}) {
    SCOPED_TRACE(codec);
    zarr::ArrayMeta m;
    m.shape = {4, 2, 3};
    m.chunks = {1, 2, 3};
    if (!codec.empty()) m.compressor = {{"id", codec}, {"level", 1}};
    const auto dir = tmp / ("a" + codec);
    zarr::create_array(dir, m);
    const auto back = zarr::read_array_meta(dir);
    EXPECT_EQ(back.shape, m.shape);
    std::vector<uint8_t> chunk(bytes.begin(), bytes.begin() + 24);
    zarr::write_chunk(dir, back, {2, 0, 0}, chunk);
    EXPECT_TRUE(fs::exists(dir + "/2.0.0"));
    EXPECT_EQ(*zarr::read_chunk(dir, back, {2, 0, 0}), chunk);
    EXPECT_FALSE(zarr::read_chunk(dir, back, {1, 0, 0}));
    std::ofstream(dir + "/3.0.0") << "garbage";
    EXPECT_THROW(zarr::read_chunk(dir, back, {3, 0, 0}), FormatError);
  }
  std::ofstream(tmp / "bad/.zarray", std::ios::trunc);
  fs::create_directories(tmp / "bad");
  std::ofstream(tmp / "bad/.zarray")
      << R"({"zarr_format":2,"shape":[2],"chunks":[1],"dtype":"<i8","compressor":null})";
  EXPECT_THROW(zarr::read_array_meta(tmp / "bad"), FormatError);
}

TEST(EmbeddingCache, StoresEverySliceReopensAndRefusesOtherDataModelsAndNormalisations) {
  TempDir tmp;
  const auto vol = small_volume(40, 32, 3);
  VolumeSlices slices(vol, io::Axis::kAxial, io::Normalization{});
  auto& model = tiny_model();
  const auto dir = tmp / "cache";
  {
    auto cache = open_cache(model, slices, dir);
    EXPECT_EQ(cache.count_present(), 0);
    EXPECT_FALSE(cache.complete());
    const auto st = compute_embeddings(model, slices, cache, false);
    EXPECT_EQ(st.computed, 3);
    EXPECT_TRUE(cache.complete());
  }
  // micro_sam layout.
  const auto attrs = zarr::read_attrs(dir);
  EXPECT_EQ(attrs["data_signature"], slices.data_signature());
  EXPECT_TRUE(attrs["tile_shape"].is_null());
  EXPECT_EQ(attrs["original_size"], nlohmann::json::array({32, 40}));
  EXPECT_EQ(attrs["input_size"], nlohmann::json::array({819, 1024}));
  const auto meta = zarr::read_array_meta(dir + "/features");
  EXPECT_EQ(meta.shape, (std::vector<int64_t>{3, 1, 256, 64, 64}));
  EXPECT_EQ(meta.chunks, (std::vector<int64_t>{1, 1, 256, 64, 64}));
  // The raw volume is LPS-ordered, so the signature is that of its own buffer (micro_sam's).
  Sha1 raw;
  raw.update(vol.data(), vol.num_bytes());
  EXPECT_EQ(slices.data_signature(), raw.hex_digest());

  // Reopening reuses everything and loads exactly what the encoder makes.
  auto cache = open_cache(model, slices, dir);
  EXPECT_EQ(compute_embeddings(model, slices, cache, false).computed, 0);
  const auto img = slices.model_image(1);
  const auto fresh = model.encode(img.data.data(), img.height, img.width, 3).to_npy();
  EXPECT_EQ(floats(cache.load(1).to_npy()), floats(fresh));

  // Other data.
  const auto other = small_volume(40, 32, 3, 1);
  VolumeSlices other_slices(other, io::Axis::kAxial, io::Normalization{});
  try {
    open_cache(model, other_slices, dir);
    FAIL() << "cache of other data accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("other data"), std::string::npos) << e.what();
  }
  // Another normalisation.
  VolumeSlices pct(vol, io::Axis::kAxial, io::parse_normalization("percentile"));
  try {
    open_cache(model, pct, dir);
    FAIL() << "cache with another normalisation accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("normalisation 'minmax:slice'"), std::string::npos)
        << e.what();
  }
  // Another checkpoint file (same weights as safetensors: a different model file).
  predict::SamPredictor st_model(kShared + "/fixtures/sam_parity/extra/sam_tiny_seed0.safetensors",
                                 {2, "cpu"});
  try {
    open_cache(st_model, slices, dir);
    FAIL() << "cache of another checkpoint accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("another checkpoint"), std::string::npos) << e.what();
  }
  // Another axis: the coronal stack has other slices, hence another signature.
  VolumeSlices coronal(vol, io::Axis::kCoronal, io::Normalization{});
  EXPECT_THROW(open_cache(model, coronal, dir), InputError);
  // Not a cache at all.
  std::ofstream(tmp / "file.txt") << "x";
  EXPECT_THROW(open_cache(model, slices, tmp / "file.txt"), InputError);
  fs::create_directories(tmp / "notzarr");
  std::ofstream(tmp / "notzarr/x") << "x";
  EXPECT_THROW(open_cache(model, slices, tmp / "notzarr"), InputError);
}

TEST(EmbeddingCache, Float16StorageIsCloseToFloat32) {
  TempDir tmp;
  const auto vol = small_volume(24, 24, 1);
  VolumeSlices slices(vol, io::Axis::kAxial, io::Normalization{});
  auto& model = tiny_model();
  CacheOptions o;
  o.fp16 = true;
  o.compressor = "zlib";
  auto cache = open_cache(model, slices, tmp / "c16", o);
  compute_embeddings(model, slices, cache, false);
  EXPECT_EQ(cache.dtype(), "<f2");
  const auto img = slices.model_image(0);
  const auto ref = floats(model.encode(img.data.data(), img.height, img.width, 3).to_npy());
  const auto half = floats(cache.load(0).to_npy());
  ASSERT_EQ(ref.size(), half.size());
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, double(std::abs(ref[i] - half[i]) / (std::abs(ref[i]) + 1e-2)));
  EXPECT_LT(worst, 2e-3);
  EXPECT_GT(worst, 0.0);  // really stored as half
  // 2D images use micro_sam's 2D layout (1, C, g, g).
  EXPECT_EQ(zarr::read_array_meta(tmp / "c16/features").shape,
            (std::vector<int64_t>{1, 256, 64, 64}));
}

TEST(EmbeddingCache, ZarrPythonReadsOurCacheAndWeReadAMicroSamStyleBloscCache) {
  if (!have_python_zarr())
    GTEST_SKIP() << "python3-zarr not installed (apt-get install python3-zarr)";
  if (!zarr::have_blosc()) GTEST_SKIP() << "built without libblosc";
  TempDir tmp;
  const auto vol = small_volume(36, 28, 2);
  io::write_image(tmp / "vol.nii.gz", vol);
  const auto read_back = io::read_image(tmp / "vol.nii.gz");
  VolumeSlices slices(read_back, io::Axis::kAxial, io::Normalization{});
  auto& model = tiny_model();
  auto cache = open_cache(model, slices, tmp / "ours");
  compute_embeddings(model, slices, cache, false);
  write_npy(tmp / "slice1.npy", cache.load(1).to_npy());

  // A second process and implementation: zarr-python reads our cache, checks the
  // signature against nibabel's view of the NIfTI, and writes a micro_sam-style
  // cache (zarr's default blosc compressor) with a partial twin.
  const std::string script = R"PY(
import hashlib, json, sys, numpy as np, nibabel as nib, zarr
d = sys.argv[0].rsplit('/', 1)[0]
f = zarr.open(d + '/ours', 'r')
a = np.asarray(nib.load(d + '/vol.nii.gz').dataobj)           # (x, y, z)
stack = np.ascontiguousarray(np.stack([a[:, :, k].T for k in range(a.shape[2])]))
assert f.attrs['data_signature'] == hashlib.sha1(stack.tobytes()).hexdigest(), 'signature'
assert f['features'].shape == (2, 1, 256, 64, 64) and f['features'].chunks == (1, 1, 256, 64, 64)
assert list(f.attrs['original_size']) == [28, 36] and list(f.attrs['input_size']) == [796, 1024]
ref = np.load(d + '/slice1.npy')
assert np.array_equal(f['features'][1], ref), 'values'
rng = np.random.default_rng(0)
feats = rng.standard_normal((2, 1, 256, 64, 64)).astype('float32')
np.save(d + '/theirs.npy', feats)
for name, full in (('theirs', True), ('partial', False)):
    g = zarr.open(d + '/' + name, 'w')
    ds = g.create_dataset('features', shape=feats.shape, chunks=(1, 1, 256, 64, 64), dtype='float32')
    ds[0] = feats[0]
    g.attrs.update(data_signature=f.attrs['data_signature'], tile_shape=None, halo=None,
                   model_type=f.attrs['model_type'], micro_sam_version='1.3.0', model_name='vit_b')
    if full:
        ds[1] = feats[1]
        g.attrs.update(input_size=[796, 1024], original_size=[28, 36])
assert json.load(open(d + '/theirs/features/.zarray'))['compressor']['id'] == 'blosc'
)PY";
  ASSERT_EQ(run_python(script, tmp.path.string()), 0) << "python side failed";

  const auto theirs_ref = floats(read_npy(tmp / "theirs.npy"));
  auto theirs = open_cache(model, slices, tmp / "theirs");
  EXPECT_TRUE(theirs.written_by_micro_sam());
  EXPECT_TRUE(theirs.complete());
  const auto s1 = floats(theirs.load(1).to_npy());
  EXPECT_TRUE(std::equal(s1.begin(), s1.end(), theirs_ref.begin() + 256 * 64 * 64));
  // A partial micro_sam cache is resumed: only the missing slice is computed.
  auto partial = open_cache(model, slices, tmp / "partial");
  EXPECT_EQ(partial.count_present(), 1);
  const auto st = compute_embeddings(model, slices, partial, false);
  EXPECT_EQ(st.computed, 1);
  EXPECT_EQ(st.reused, 1);
  EXPECT_TRUE(partial.complete());
  // A micro_sam cache was made with per-slice min-max: another normalisation is refused.
  VolumeSlices win(read_back, io::Axis::kAxial, io::parse_normalization("window:400:40"));
  EXPECT_THROW(open_cache(model, win, tmp / "theirs"), InputError);
}

TEST(EmbeddingCache, ReadsAndResumesZarrV3CachesAsNewerMicroSamWritesThem) {
  if (!have_python_zarr()) GTEST_SKIP() << "python3-zarr / numcodecs not installed";
  if (!zarr::have_blosc()) GTEST_SKIP() << "built without libblosc";
  TempDir tmp;
  const auto vol = small_volume(20, 16, 2);
  VolumeSlices slices(vol, io::Axis::kAxial, io::Normalization{});
  auto& model = tiny_model();
  const auto spec = make_cache_spec(model, slices);
  // A zarr v3 store written by hand from the specification (numcodecs' blosc for the
  // chunks): slice 0 present, slice 1 missing, no sizes yet = a partial cache.
  const std::string script = R"PY(
import json, os, sys, numpy as np, numcodecs
d = sys.argv[0].rsplit('/', 1)[0] + '/v3'
sig, model_type = open(d + '.sig').read().split()
os.makedirs(d + '/features/c/0/0/0/0', exist_ok=True)
json.dump({'zarr_format': 3, 'node_type': 'group', 'attributes': {
    'data_signature': sig, 'tile_shape': None, 'halo': None, 'model_type': model_type,
    'micro_sam_version': '1.8.10'}}, open(d + '/zarr.json', 'w'))
json.dump({'zarr_format': 3, 'node_type': 'array', 'shape': [2, 1, 256, 64, 64], 'data_type': 'float32',
           'chunk_grid': {'name': 'regular', 'configuration': {'chunk_shape': [1, 1, 256, 64, 64]}},
           'chunk_key_encoding': {'name': 'default', 'configuration': {'separator': '/'}},
           'fill_value': 0.0, 'attributes': {}, 'dimension_names': None,
           'codecs': [{'name': 'bytes', 'configuration': {'endian': 'little'}},
                      {'name': 'blosc', 'configuration': {'typesize': 4, 'cname': 'lz4', 'clevel': 5,
                                                          'shuffle': 'shuffle', 'blocksize': 0}}]},
          open(d + '/features/zarr.json', 'w'))
x = np.random.default_rng(1).standard_normal((1, 1, 256, 64, 64)).astype('float32')
np.save(d + '.slice0.npy', x[0])
open(d + '/features/c/0/0/0/0/0', 'wb').write(numcodecs.Blosc('lz4', 5, numcodecs.Blosc.SHUFFLE).encode(x))
)PY";
  const std::string script2 = R"PY(
import sys, numpy as np, numcodecs
d = sys.argv[0].rsplit('/', 1)[0] + '/v3'
y = np.frombuffer(numcodecs.Blosc().decode(open(d + '/features/c/1/0/0/0/0', 'rb').read()), dtype='float32')
assert np.array_equal(y, np.load(d + '.slice1.npy').ravel()), 'our blosc chunk'
)PY";
  std::ofstream(tmp / "v3.sig") << spec.data_signature << " " << spec.model_type;
  ASSERT_EQ(run_python(script, tmp.path.string()), 0);
  auto cache = open_cache(model, slices, tmp / "v3");
  EXPECT_TRUE(cache.written_by_micro_sam());
  EXPECT_EQ(cache.count_present(), 1);
  EXPECT_EQ(floats(cache.load(0).to_npy()), floats(read_npy(tmp / "v3.slice0.npy")));
  const auto st = compute_embeddings(model, slices, cache, false);
  EXPECT_EQ(st.computed, 1);
  EXPECT_TRUE(cache.complete());
  // Sizes went into the v3 attributes; the new slice is a blosc chunk numcodecs decodes.
  EXPECT_EQ(zarr::read_attrs(tmp / "v3")["original_size"], nlohmann::json::array({16, 20}));
  write_npy(tmp / "v3.slice1.npy", cache.load(1).to_npy());
  EXPECT_EQ(run_python(script2, tmp.path.string()), 0);
}

TEST(EmbeddingCache, KilledEmbeddingRunResumesWhereItStopped) {
  const char* cli = std::getenv("MEDICOSAM_CLI");
  if (!cli || !fs::exists(cli)) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp;
  const auto vol = small_volume(32, 32, 4);
  const auto vol_path = tmp / "vol.nrrd";
  io::write_image(vol_path, vol);
  const auto dir = tmp / "cache";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(cli, cli, "embed", vol_path.c_str(), "--cache", dir.c_str(), "--model", kModel.c_str(),
            "--threads", "2", "--precision", "fp32", "--quiet", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill it as soon as the first slice is on disk.
  const auto first = dir + "/features/0.0.0.0.0";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (!fs::exists(first) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(fs::exists(first)) << "the embedding run never wrote a slice";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  // What is on disk is consistent: complete chunks only, no sizes (= partial).
  const auto attrs = zarr::read_attrs(dir);
  EXPECT_FALSE(attrs.contains("input_size"));
  int chunks = 0;
  for (const auto& e : fs::directory_iterator(dir + "/features")) {
    const auto name = e.path().filename().string();
    if (name[0] == '.') continue;
    ++chunks;
    EXPECT_EQ(fs::file_size(e.path()), 256u * 64 * 64 * 4) << name;
  }
  ASSERT_GE(chunks, 1);
  ASSERT_LT(chunks, 4);
  // Resume through the CLI; it reports what it reused.
  const auto out = tmp / "resume.json";
  const std::string cmd = std::string(cli) + " embed " + vol_path + " --cache " + dir +
                          " --model " + kModel + " --threads 2 --precision fp32 --json > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(out);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["reused"], chunks);
  EXPECT_EQ(j["computed"], 4 - chunks);
  // The resumed cache is complete and its slices are what the encoder makes.
  // Within 1e-4, not bit for bit: the CLI may run other BLAS kernels than this
  // test process (it selects OpenBLAS's AVX kernels where OpenBLAS fell back to
  // SSE3, core/runtime_env.hpp), which reorders float sums. A wrong or missing
  // slice differs by O(1).
  VolumeSlices slices(vol, io::Axis::kAxial, io::Normalization{});
  auto cache = open_cache(tiny_model(), slices, dir);
  EXPECT_TRUE(cache.complete());
  for (int z : {0, 3}) {
    const auto img = slices.model_image(z);
    const auto cached = floats(cache.load(z).to_npy());
    const auto fresh =
        floats(tiny_model().encode(img.data.data(), img.height, img.width, 3).to_npy());
    ASSERT_EQ(cached.size(), fresh.size()) << "slice " << z;
    double max_diff = 0;
    for (size_t i = 0; i < cached.size(); ++i)
      max_diff = std::max(max_diff, std::abs(double(cached[i]) - fresh[i]));
    EXPECT_LE(max_diff, 1e-4) << "slice " << z;
  }
}

}  // namespace
}  // namespace medicosam::segment
