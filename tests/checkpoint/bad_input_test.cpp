// Damaged, hostile and wrong files: each must raise a typed error whose message
// names the file — never crash, never execute anything.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/checkpoint/pickle_writer.hpp"
#include "medicosam/checkpoint/zip_writer.hpp"
#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "torch_test_util.hpp"

namespace medicosam::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::fixture;
using testing::message_of;
using testing::TempDir;

// Reads `path` expecting a FormatError that names the file; returns the message.
std::string format_error(const std::string& path) {
  const std::string msg = message_of<FormatError>([&] { read_sam_checkpoint(path); });
  EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;
  return msg;
}

// A torch.save-style archive with the given data.pkl bytes and storages.
void write_archive(const std::string& path, const std::string& pickle,
                   const std::vector<std::pair<std::string, std::string>>& storages = {}) {
  AtomicFile out(path);
  ZipWriter zip(out);
  zip.add("archive/data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : storages)
    zip.add("archive/data/" + key, bytes.data(), bytes.size());
  zip.add("archive/version", "3\n", 2);
  zip.finish();
  out.commit();
}

std::string copy_prefix(const TempDir& dir, const std::string& name, std::size_t bytes) {
  const std::string all = testing::read_bytes(fixture("sam_tiny_seed0.pth"));
  const std::string path = dir.file(name);
  testing::write_bytes(path, all.substr(0, std::min(bytes, all.size())));
  return path;
}

TEST(BadInput, MissingFileIsAnInputError) {
  TempDir dir;
  const std::string path = dir.file("nope.pth");
  const std::string msg = message_of<InputError>([&] { read_sam_checkpoint(path); });
  EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST(BadInput, DirectoryIsAnInputError) {
  TempDir dir;
  const std::string msg = message_of<InputError>([&] { read_sam_checkpoint(dir.path().string()); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
}

TEST(BadInput, EmptyFile) {
  TempDir dir;
  const std::string path = dir.file("empty.pth");
  testing::write_bytes(path, "");
  EXPECT_NE(format_error(path).find("is empty"), std::string::npos);
}

TEST(BadInput, RandomBytes) {
  TempDir dir;
  const std::string path = dir.file("random.pth");
  std::mt19937 rng(7);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  bytes[0] = 'x';  // make sure it is not accidentally a zip or safetensors
  testing::write_bytes(path, bytes);
  EXPECT_NE(format_error(path).find("unknown format"), std::string::npos);
}

TEST(BadInput, TruncatedToHalf) {
  TempDir dir;
  const std::string path =
      copy_prefix(dir, "half.pth", fs::file_size(fixture("sam_tiny_seed0.pth")) / 2);
  EXPECT_NE(format_error(path).find("truncated"), std::string::npos);
}

TEST(BadInput, TruncatedToTheFirstHeader) {
  TempDir dir;
  const std::string path = copy_prefix(dir, "header_only.pth", 100);
  EXPECT_NE(format_error(path).find("truncated"), std::string::npos);
}

TEST(BadInput, TruncatedJustBeforeTheEnd) {
  TempDir dir;
  const std::string path =
      copy_prefix(dir, "almost.pth", fs::file_size(fixture("sam_tiny_seed0.pth")) - 10);
  EXPECT_NE(format_error(path).find("truncated"), std::string::npos);
}

TEST(BadInput, FlippedStorageByteFailsTheCrc) {
  TempDir dir;
  std::string bytes = testing::read_bytes(fixture("sam_tiny_seed0.pth"));
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  const std::string path = dir.file("flipped.pth");
  testing::write_bytes(path, bytes);
  EXPECT_NE(format_error(path).find("CRC-32 mismatch"), std::string::npos);
}

TEST(BadInput, ZipWithoutDataPkl) {
  TempDir dir;
  const std::string path = dir.file("nodata.pth");
  AtomicFile out(path);
  ZipWriter zip(out);
  zip.add("archive/version", "3\n", 2);
  zip.add("archive/data/0", "abcd", 4);
  zip.finish();
  out.commit();
  EXPECT_NE(format_error(path).find("no '<name>/data.pkl' entry"), std::string::npos);
}

// The pickle of os.system("touch <marker>"), via GLOBAL (protocol 2) or STACK_GLOBAL (4).
std::string os_system_pickle(const std::string& marker, bool stack_global) {
  const std::string cmd = "touch " + marker;
  std::string p;
  if (stack_global) {
    p += "\x80\x04";
    p += "\x8c\x02os";
    p += "\x8c\x06system";
    p += "\x93";
  } else {
    p += "\x80\x02";
    p += "cos\nsystem\n";
  }
  p += 'X';
  for (int k = 0; k < 4; ++k) p += static_cast<char>((cmd.size() >> (8 * k)) & 0xFF);
  p += cmd;
  p += "\x85R.";
  return p;
}

void expect_refused_os_system(bool stack_global) {
  TempDir dir;
  const std::string marker = dir.file("PWNED");
  const std::string path = dir.file(stack_global ? "evil4.pth" : "evil2.pth");
  write_archive(path, os_system_pickle(marker, stack_global));
  const std::string msg = format_error(path);
  EXPECT_NE(msg.find("the pickle names the global 'os.system', which could execute code"),
            std::string::npos)
      << msg;
  // The generic reader refuses too, and nothing ran.
  message_of<FormatError>([&] { read_pytorch_checkpoint(path); });
  EXPECT_FALSE(fs::exists(marker));
}

TEST(BadInput, OsSystemViaGlobalIsRefused) {
  expect_refused_os_system(false);
}

TEST(BadInput, OsSystemViaStackGlobalIsRefused) {
  expect_refused_os_system(true);
}

TEST(BadInput, PythonMadeOsSystemPicklesAreRefusedAndNeverRun) {
  if (!testing::python_has_torch()) GTEST_SKIP() << testing::kPython << " lacks torch";
  TempDir dir;
  std::string log;
  ASSERT_EQ(testing::run_command(std::string(testing::kPython) + " " + testing::helper_script() +
                                     " generate " + dir.path().string(),
                                 &log),
            0)
      << log;
  for (const char* name : {"evil_global.pth", "evil_stack_global.pth"}) {
    const std::string msg = format_error(dir.file(name));
    // os.system is posix.system on Linux: that is the name the pickle carries.
    EXPECT_NE(msg.find("'posix.system'"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir.file("PWNED_MARKER"))) << "the payload must never run";

  // The same generated folder holds the damaged torch.save files.
  EXPECT_NE(format_error(dir.file("short_storage.pth")).find("holds only"), std::string::npos);
  EXPECT_NE(format_error(dir.file("missing_storage.pth")).find("is missing from the archive"),
            std::string::npos);
  EXPECT_NE(format_error(dir.file("no_data_pkl.pth")).find("data.pkl"), std::string::npos);
  EXPECT_NE(format_error(dir.file("legacy.pth")).find("legacy"), std::string::npos);
}

TEST(BadInput, StorageShorterThanItsTensor) {
  TempDir dir;
  const std::string path = dir.file("short.pth");
  TensorRef t;
  t.storage_key = "0";
  t.storage_numel = 100;
  t.sizes = {10, 10};
  t.strides = {10, 1};
  RawValue::Dict d;
  d.ordered = true;
  d.set("image_encoder.w", RawValue(t));
  write_archive(path, pickle_dump(RawValue(d), path), {{"0", std::string(8, '\0')}});
  const std::string msg = format_error(path);
  EXPECT_NE(msg.find("needs 400 bytes of storage 'archive/data/0', which holds only 8 bytes"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("image_encoder.w"), std::string::npos) << msg;
}

TEST(BadInput, ViewBeyondItsDeclaredStorage) {
  TempDir dir;
  const std::string path = dir.file("view.pth");
  TensorRef t;
  t.storage_key = "0";
  t.storage_numel = 4;
  t.storage_offset = 2;
  t.sizes = {3};
  t.strides = {1};
  write_archive(path, pickle_dump(RawValue(t), path), {{"0", std::string(64, '\0')}});
  EXPECT_NE(format_error(path).find("declares only 4 elements"), std::string::npos);

  t.storage_offset = 0;
  t.sizes = {std::int64_t{1} << 40, std::int64_t{1} << 40};  // numel overflows
  t.strides = {1, 1};
  write_archive(path, pickle_dump(RawValue(t), path), {{"0", std::string(64, '\0')}});
  EXPECT_NE(format_error(path).find("impossible size"), std::string::npos);
}

TEST(BadInput, SafetensorsOffsetsPastTheEnd) {
  TempDir dir;
  const std::string path = dir.file("past.safetensors");
  const std::string json = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string header(8, '\0');
  header[0] = static_cast<char>(json.size());
  testing::write_bytes(path, header + json + std::string(8, '\0'));
  EXPECT_NE(format_error(path).find("outside"), std::string::npos);
}

TEST(BadInput, SafetensorsAbsurdHeaderLength) {
  TempDir dir;
  const std::string path = dir.file("absurd.safetensors");
  // A header length of 2**60 - 1 followed by '{': sniffed as safetensors, refused
  // before any allocation.
  std::string bytes(8, '\xff');
  bytes[7] = '\x0f';
  testing::write_bytes(path, bytes + "{}");
  EXPECT_NE(format_error(path).find("absurd"), std::string::npos);
  // A plausible length, but more than the file holds.
  bytes = std::string(8, '\0');
  bytes[1] = '\x10';  // 4096
  testing::write_bytes(path, bytes + "{\"w\": 1}");
  EXPECT_NE(format_error(path).find("truncated"), std::string::npos);
}

TEST(BadInput, LegacyPickleFormat) {
  TempDir dir;
  const std::string path = dir.file("legacy.pth");
  // A legacy file starts with a protocol-2 pickle of torch's magic number.
  testing::write_bytes(path, std::string("\x80\x02\x8a\x0a", 4) + "legacy data");
  EXPECT_NE(format_error(path).find("legacy (pre-1.6)"), std::string::npos);
}

}  // namespace
}  // namespace medicosam::checkpoint
