// Hostile torch.save archives against the full reader (tensors materialised):
// stride-0 and overlapping views and repeated references to one storage must
// not materialise more than a small multiple of the file. Each runs in a child
// under a memory limit (memory_limit.hpp); the peak each took is printed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/checkpoint/pytorch_archive.hpp"
#include "medicosam/core/error.hpp"
#include "memory_limit.hpp"
#include "test_util.hpp"

namespace medicosam::checkpoint {
namespace {

using testing::LimitedRun;
using testing::run_with_memory_limit;
using testing::TempDir;

constexpr unsigned long long kMiB = 1ull << 20;
constexpr unsigned long long kLimit = 1024 * kMiB;

void report(const char* name, const std::string& path, const LimitedRun& r) {
  std::printf("[memory] %s: file %ju bytes, outcome %s, peak growth %.1f MiB: %s\n", name,
              static_cast<std::uintmax_t>(std::filesystem::file_size(path)), r.outcome.c_str(),
              r.peak_mib, r.message.substr(0, 300).c_str());
}

// Reads the checkpoint in a limited child; on success reports the number of
// top-level items and how many distinct tensor buffers they use.
LimitedRun read_limited(const std::string& path) {
  return run_with_memory_limit(kLimit, [&] {
    at::set_num_threads(1);  // the child is single threaded after fork()
    const PyValue v = read_pytorch_checkpoint(path);
    const auto* list = v.get_if<PyValue::List>();
    if (!list) return std::string("loaded a ") + v.type_name();
    std::vector<const void*> buffers;
    for (const PyValue& item : *list) {
      const auto* t = item.get_if<at::Tensor>();
      if (!t) return std::string("an item is a ") + item.type_name();
      if (std::find(buffers.begin(), buffers.end(), t->data_ptr()) == buffers.end()) {
        buffers.push_back(t->data_ptr());
      }
    }
    return std::to_string(list->size()) + " tensors, " + std::to_string(buffers.size()) +
           " buffers";
  });
}

// An archive with one float storage of `floats` elements (value k at k) and
// root = a list of `views`.
std::string write_views(const TempDir& dir, const std::string& name, std::int64_t floats,
                        const std::vector<TensorRef>& views) {
  const std::string path = dir.file(name);
  std::vector<float> data(static_cast<std::size_t>(floats));
  for (std::size_t k = 0; k < data.size(); ++k) data[k] = static_cast<float>(k);
  RawValue::List root;
  for (const TensorRef& t : views) root.push_back(RawValue(t));
  write_pytorch_archive(path, RawValue(std::move(root)),
                        {{"0", data.data(), data.size() * sizeof(float)}});
  return path;
}

TensorRef view(std::int64_t storage_numel, std::int64_t offset, std::vector<std::int64_t> sizes,
               std::vector<std::int64_t> strides) {
  TensorRef t;
  t.storage_key = "0";
  t.storage_numel = storage_numel;
  t.storage_offset = offset;
  t.sizes = std::move(sizes);
  t.strides = std::move(strides);
  return t;
}

TEST(HostileTorch, StrideZeroViewOfOneElementIsRefused) {
  // One float seen as 2^30 floats through stride 0: 4 GB from a 1 kB file.
  TempDir dir;
  const std::string path =
      write_views(dir, "stride0.pth", 1, {view(1, 0, {std::int64_t{1} << 30}, {0})});
  const LimitedRun r = read_limited(path);
  report("stride-0 view, 2^30 elements of one float", path, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("'" + path + "'"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("stride-0"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 64.0 + testing::kSanitizerSlackMiB);
}

TEST(HostileTorch, RepeatedReferencesShareOneTensor) {
  // The same 4 MB tensor 2000 times: 8 GB if each reference were copied;
  // torch.load returns one object, and so do we.
  TempDir dir;
  const std::int64_t n = 1 << 20;
  const std::vector<TensorRef> views(2000, view(n, 0, {n}, {1}));
  const std::string path = write_views(dir, "repeated.pth", n, views);
  const LimitedRun r = read_limited(path);
  report("one 4 MB tensor referenced 2000 times", path, r);
  EXPECT_EQ(r.outcome, "ok") << r.message;
  EXPECT_EQ(r.message, "2000 tensors, 1 buffers");
  EXPECT_LT(r.peak_mib, 64.0 + testing::kSanitizerSlackMiB);

  // And the shared tensor holds the storage's values.
  const PyValue v = read_pytorch_checkpoint(path);
  const auto& list = *v.get_if<PyValue::List>();
  const at::Tensor& t = *list[1999].get_if<at::Tensor>();
  ASSERT_EQ(t.numel(), n);
  EXPECT_EQ(t[12345].item<float>(), 12345.0f);
}

TEST(HostileTorch, ManyOverlappingViewsOfOneStorageAreRefused) {
  // 1000 distinct, overlapping 4 MB views of one 4 MB storage: 4 GB.
  TempDir dir;
  const std::int64_t n = 1 << 20;
  std::vector<TensorRef> views;
  for (int k = 0; k < 1000; ++k) views.push_back(view(n, k, {n - 1000}, {1}));
  const std::string path = write_views(dir, "overlap.pth", n, views);
  const LimitedRun r = read_limited(path);
  report("1000 overlapping views of one 4 MB storage", path, r);
  EXPECT_EQ(r.outcome, "FormatError") << r.message;
  EXPECT_NE(r.message.find("overlapping"), std::string::npos) << r.message;
  EXPECT_LT(r.peak_mib, 200.0 + testing::kSanitizerSlackMiB);
}

TEST(HostileTorch, LegitimateViewsOfOneStorageStillLoad) {
  // A split qkv-style weight: three row blocks and one strided view of one
  // storage, as torch.save writes views; together no more than 2x the storage.
  TempDir dir;
  const std::int64_t rows = 300, cols = 64;
  const std::string path =
      write_views(dir, "views.pth", rows * cols,
                  {view(rows * cols, 0, {100, cols}, {cols, 1}),
                   view(rows * cols, 100 * cols, {100, cols}, {cols, 1}),
                   view(rows * cols, 200 * cols, {100, cols}, {cols, 1}),
                   view(rows * cols, 1, {rows, cols / 2}, {cols, 2})});
  const PyValue v = read_pytorch_checkpoint(path);
  const auto& list = *v.get_if<PyValue::List>();
  ASSERT_EQ(list.size(), 4u);
  EXPECT_EQ(list[1].get_if<at::Tensor>()->index({0, 0}).item<float>(), 100.0f * cols);
  EXPECT_EQ(list[3].get_if<at::Tensor>()->index({2, 3}).item<float>(), 2.0f * cols + 7.0f);
}

}  // namespace
}  // namespace medicosam::checkpoint
