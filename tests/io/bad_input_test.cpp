// Malformed NIfTI / NRRD / MetaImage files: every one is refused with an
// error naming the file, before ITK sees it and before anything big is
// allocated. Also the valid but less common layouts (.nhdr, .mhd, .hdr/.img).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "medicosam/core/error.hpp"
#include "medicosam/io/header_check.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

namespace medicosam::io {
namespace {

using test::read_bytes;
using test::TempDir;
using test::write_bytes;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects read_image(path) to throw an InputError/FormatError naming the
// file and containing `what`.
void expect_refused(const std::string& path, const std::string& what) {
  const std::string msg = error_of([&] { read_image(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
}

Volume small_volume() {
  Geometry g;
  g.size = {6, 5, 4};
  g.spacing = {0.5, 0.75, 2.0};
  g.origin = {10, -20, 30};
  Volume v(PixelType::kInt16, g);
  for (int64_t i = 0; i < v.num_voxels(); ++i)
    v.data_as<int16_t>()[i] = static_cast<int16_t>(i * 3 - 50);
  return v;
}

template <typename T>
void poke(std::string& bytes, size_t offset, T value) {
  std::memcpy(&bytes[offset], &value, sizeof(T));
}

// ---------------------------------------------------------------- NIfTI

TEST(BadNifti, TruncatedGzip) {
  TempDir dir;
  write_image(dir / "v.nii.gz", small_volume());
  const std::string bytes = read_bytes(dir / "v.nii.gz");
  write_bytes(dir / "cut.nii.gz", bytes.substr(0, bytes.size() * 2 / 3));
  expect_refused(dir / "cut.nii.gz", "truncated");
}

TEST(BadNifti, CorruptGzip) {
  TempDir dir;
  write_image(dir / "v.nii.gz", small_volume());
  std::string bytes = read_bytes(dir / "v.nii.gz");
  for (size_t i = 30; i < 60 && i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  write_bytes(dir / "bad.nii.gz", bytes);
  EXPECT_THROW(read_image(dir / "bad.nii.gz"), FormatError);
}

TEST(BadNifti, DimensionsDisagreeWithData) {
  TempDir dir;
  write_image(dir / "v.nii", small_volume());
  std::string bytes = read_bytes(dir / "v.nii");
  poke<int16_t>(bytes, 42, 60);  // dim[1]: 6 -> 60
  write_bytes(dir / "big.nii", bytes);
  expect_refused(dir / "big.nii", "header dimensions need");
  // Truncated uncompressed file: same check.
  write_bytes(dir / "cut.nii", read_bytes(dir / "v.nii").substr(0, 352 + 100));
  expect_refused(dir / "cut.nii", "file holds only");
}

TEST(BadNifti, AbsurdSizeRefusedBeforeAllocating) {
  TempDir dir;
  write_image(dir / "v.nii", small_volume());
  std::string bytes = read_bytes(dir / "v.nii");
  for (int i = 1; i <= 3; ++i) poke<int16_t>(bytes, 40 + 2 * i, 32767);
  write_bytes(dir / "huge.nii", bytes);
  expect_refused(dir / "huge.nii", "refusing to allocate");
}

TEST(BadNifti, UnsupportedVariants) {
  TempDir dir;
  write_image(dir / "v.nii", small_volume());
  const std::string good = read_bytes(dir / "v.nii");
  std::string b = good;
  poke<int16_t>(b, 40, 4);  // 4D with 3 volumes
  poke<int16_t>(b, 48, 3);
  write_bytes(dir / "t.nii", b);
  expect_refused(dir / "t.nii", "4D");
  b = good;
  poke<int16_t>(b, 70, 32);  // complex64
  write_bytes(dir / "c.nii", b);
  expect_refused(dir / "c.nii", "datatype 32");
  b = good;
  poke<int16_t>(b, 72, 8);  // bitpix disagrees with int16
  write_bytes(dir / "bp.nii", b);
  expect_refused(dir / "bp.nii", "bitpix");
  b = good;
  poke<int32_t>(b, 0, 540);
  write_bytes(dir / "n2.nii", b);
  expect_refused(dir / "n2.nii", "NIfTI-2");
  b = good;
  poke<int16_t>(b, 40, 0);
  write_bytes(dir / "d0.nii", b);
  expect_refused(dir / "d0.nii", "dim[0]");
  b = good;
  poke<float>(b, 280, std::numeric_limits<float>::quiet_NaN());  // srow_x[0]
  write_bytes(dir / "nan.nii", b);
  expect_refused(dir / "nan.nii", "sform");
}

TEST(BadNifti, GarbageWithNiftiName) {
  TempDir dir;
  write_bytes(dir / "x.nii", std::string(400, '\x07'));
  EXPECT_THROW(read_image(dir / "x.nii"), FormatError);
  write_bytes(dir / "y.nii.gz", "\x1f\x8b not really gzip");
  EXPECT_THROW(read_image(dir / "y.nii.gz"), FormatError);
}

TEST(Nifti, HeaderImagePairReads) {
  TempDir dir;
  const Volume v = small_volume();
  write_image(dir / "v.nii", v);
  std::string bytes = read_bytes(dir / "v.nii");
  std::string hdr = bytes.substr(0, 348);
  std::memcpy(&hdr[344], "ni1\0", 4);
  poke<float>(hdr, 108, 0.0f);  // vox_offset
  write_bytes(dir / "pair.hdr", hdr);
  write_bytes(dir / "pair.img", bytes.substr(352));
  const Volume back = read_image(dir / "pair.hdr");
  EXPECT_EQ(0, std::memcmp(back.data(), v.data(), v.num_bytes()));
  EXPECT_LT(grid_difference(back.geometry(), v.geometry()), 1e-6);
  std::filesystem::remove(dir / "pair.img");
  EXPECT_THROW(read_image(dir / "pair.hdr"), InputError);
}

// ---------------------------------------------------------------- NRRD

std::string nrrd_header(const std::string& sizes, const std::string& encoding,
                        const std::string& extra = "") {
  return "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: " + sizes +
         "\nspace directions: (0.5,0,0) (0,0.75,0) (0,0,2)\nkinds: domain domain domain\nendian: "
         "little\n"
         "encoding: " +
         encoding + "\nspace origin: (10,-20,30)\n" + extra;
}

std::string raw_data(const Volume& v) {
  return std::string(static_cast<const char*>(v.data()), v.num_bytes());
}

TEST(Nrrd, DetachedHeaderReads) {
  TempDir dir;
  const Volume v = small_volume();
  write_bytes(dir / "v.nhdr", nrrd_header("6 5 4", "raw", "data file: v.raw\n"));
  write_bytes(dir / "v.raw", raw_data(v));
  const Volume back = read_image(dir / "v.nhdr");
  EXPECT_EQ(0, std::memcmp(back.data(), v.data(), v.num_bytes()));
  EXPECT_LT(grid_difference(back.geometry(), v.geometry()), 1e-9);
}

TEST(BadNrrd, DimensionsDisagreeWithData) {
  TempDir dir;
  const Volume v = small_volume();
  write_bytes(dir / "a.nrrd", nrrd_header("6 5 40", "raw", "\n") + raw_data(v));
  expect_refused(dir / "a.nrrd", "header dimensions need");
  write_image(dir / "gz.nrrd", v);  // gzip-encoded by ITK
  std::string bytes = read_bytes(dir / "gz.nrrd");
  const size_t pos = bytes.find("sizes: 6 5 4");
  ASSERT_NE(pos, std::string::npos);
  bytes.replace(pos, 12, "sizes: 6 5 9");
  write_bytes(dir / "gz_big.nrrd", bytes);
  expect_refused(dir / "gz_big.nrrd", "after decompression");
}

TEST(BadNrrd, TruncatedGzip) {
  TempDir dir;
  write_image(dir / "v.nrrd", small_volume());
  const std::string bytes = read_bytes(dir / "v.nrrd");
  write_bytes(dir / "cut.nrrd", bytes.substr(0, bytes.size() - 40));
  expect_refused(dir / "cut.nrrd", "truncated");
}

TEST(BadNrrd, MalformedHeaders) {
  TempDir dir;
  struct Case {
    std::string header, what;
  };
  const Case cases[] = {
      {nrrd_header("6 5", "raw", "\n"), "sizes"},
      {nrrd_header("6 5 -4", "raw", "\n"), "sizes"},
      {nrrd_header("100000 100000 100000", "raw", "\n"), "refusing to allocate"},
      {nrrd_header("4611686018427387904 4 4", "raw", "\n"), "absurdly large"},
      {nrrd_header("6 5 4", "bzip2", "\n"), "bzip2"},
      {nrrd_header("6 5 4", "raw", "data file: LIST\n"), "several files"},
      {nrrd_header("6 5 4", "raw", "data file: missing.raw\n\n"), "missing"},
      {nrrd_header("6 5 4", "raw"), "truncated"},  // header ends without the blank line
      {"NRRD0004\ntype: float128\ndimension: 1\nsizes: 4\nencoding: raw\n\n", "type"},
      {"NRRD0004\ntype: short\nsizes: 4\nencoding: raw\n\n", "dimension"},
      {"NRRD0004\ntype: long long\ndimension: 1\nsizes: 4\nencoding: raw\nendian: little\n\n",
       "64-bit"},
      {"NRRD0004\ntype: float\ndimension: 4\nsizes: 2 3 4 5\nkinds: domain domain domain domain\n"
       "encoding: raw\nendian: little\n\n",
       "spatial axes"},
      {nrrd_header("6 5 4", "raw", "space origin: (nan,0,0)\n\n"), "origin"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string path = dir / ("case" + std::to_string(i++) + ".nrrd");
    write_bytes(path, c.header + (c.header.back() == '\n' && c.header[c.header.size() - 2] == '\n'
                                      ? std::string(240, '\0')
                                      : std::string()));
    expect_refused(path, c.what);
  }
}

// ---------------------------------------------------------------- MetaImage

std::string mha_header(const std::string& dims, const std::string& extra = "",
                       const std::string& data_file = "LOCAL") {
  return "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
         "ElementSpacing = 0.5 0.75 2\nOffset = 10 -20 30\nTransformMatrix = 1 0 0 0 1 0 0 0 "
         "1\nDimSize = " +
         dims + "\nElementType = MET_SHORT\n" + extra + "ElementDataFile = " + data_file + "\n";
}

TEST(MetaImage, DetachedMhdReads) {
  TempDir dir;
  const Volume v = small_volume();
  write_bytes(dir / "v.mhd", mha_header("6 5 4", "", "v.raw"));
  write_bytes(dir / "v.raw", raw_data(v));
  const Volume back = read_image(dir / "v.mhd");
  EXPECT_EQ(0, std::memcmp(back.data(), v.data(), v.num_bytes()));
  EXPECT_LT(grid_difference(back.geometry(), v.geometry()), 1e-9);
}

TEST(BadMetaImage, DimensionsDisagreeWithData) {
  TempDir dir;
  write_bytes(dir / "a.mha", mha_header("6 5 40") + raw_data(small_volume()));
  expect_refused(dir / "a.mha", "header dimensions need");
  write_bytes(dir / "b.mhd", mha_header("6 5 4", "", "b.raw"));
  write_bytes(dir / "b.raw", raw_data(small_volume()).substr(0, 100));
  expect_refused(dir / "b.mhd", "file holds only");
}

TEST(BadMetaImage, TruncatedCompressedData) {
  TempDir dir;
  write_image(dir / "v.mha", small_volume());  // compressed by ITK
  const std::string bytes = read_bytes(dir / "v.mha");
  ASSERT_NE(bytes.find("CompressedData = True"), std::string::npos);
  write_bytes(dir / "cut.mha", bytes.substr(0, bytes.size() - 30));
  expect_refused(dir / "cut.mha", "truncated");
}

TEST(BadMetaImage, MalformedHeaders) {
  TempDir dir;
  struct Case {
    std::string header, what;
  };
  const Case cases[] = {
      {mha_header("6 5"), "DimSize"},
      {mha_header("6 5 0"), "DimSize"},
      {mha_header("60000 60000 60000"), "refusing to allocate"},
      {mha_header("6 5 4", "ElementNumberOfChannels = 9\n"), "ElementNumberOfChannels"},
      {"ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementType = MET_SHORT\n",
       "ElementDataFile"},
      {"ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementType = "
       "MET_LONG_LONG\nElementDataFile = LOCAL\n",
       "ElementType"},
      {mha_header("6 5 4", "", "LIST"), "several files"},
      {mha_header("6 5 4", "ElementSpacing = 1 nan 1\n"), "invalid number"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string path = dir / ("case" + std::to_string(i++) + ".mha");
    write_bytes(path, c.header);
    expect_refused(path, c.what);
  }
}

// ---------------------------------------------------------------- parsers

TEST(HeaderParsers, InMemoryInflateDetectsTruncation) {
  TempDir dir;
  write_image(dir / "v.nii.gz", small_volume());
  const std::string bytes = read_bytes(dir / "v.nii.gz");
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint64_t full = 352 + small_volume().num_bytes();
  EXPECT_EQ(inflated_size(p, bytes.size(), full, "v"), full);
  EXPECT_THROW(inflated_size(p, bytes.size() / 2, full, "v"), FormatError);
}

TEST(HeaderParsers, DetectFormat) {
  TempDir dir;
  write_image(dir / "a.nii.gz", small_volume());
  write_image(dir / "b.nrrd", small_volume());
  write_image(dir / "c.mha", small_volume());
  EXPECT_EQ(detect_format(dir / "a.nii.gz"), FileFormat::kNifti);
  EXPECT_EQ(detect_format(dir / "b.nrrd"), FileFormat::kNrrd);
  EXPECT_EQ(detect_format(dir / "c.mha"), FileFormat::kMetaImage);
  EXPECT_EQ(detect_format(test::fixture("gray16.png")), FileFormat::kPng);
  EXPECT_EQ(detect_format(test::fixture("rgb8.tif")), FileFormat::kTiff);
  EXPECT_EQ(detect_format(test::fixture("rgb8.bmp")), FileFormat::kBmp);
  write_bytes(dir / "x.bin", "nothing to see");
  EXPECT_EQ(detect_format(dir / "x.bin"), FileFormat::kUnknown);
  EXPECT_THROW(read_image(dir / "x.bin"), FormatError);
}

// ---------------------------------------------------------------- regressions

// Inputs that made ITK's PNG/JPEG readers or GDCM abort the process (found by
// mutating the fixtures); each must now be a FormatError.
std::string with_bytes(std::string bytes, std::initializer_list<std::pair<size_t, uint8_t>> edits) {
  for (const auto& [offset, value] : edits) bytes[offset] = static_cast<char>(value);
  return bytes;
}

TEST(Regression, CorruptPngChunksDoNotAbort) {
  TempDir dir;
  write_bytes(dir / "a.png", with_bytes(read_bytes(test::fixture("gray16.png")),
                                        {{13, 0x7c}, {87, 0xdb}, {207, 0x50}, {232, 0x77}}));
  EXPECT_THROW(read_image(dir / "a.png"), FormatError);
  write_bytes(dir / "b.png", read_bytes(test::fixture("palette.png")).substr(0, 515));
  EXPECT_THROW(read_image(dir / "b.png"), FormatError);
  write_bytes(dir / "c.png",
              with_bytes(read_bytes(test::fixture("palette.png")), {{12, 'X'}}));  // bad chunk type
  EXPECT_THROW(read_image(dir / "c.png"), FormatError);
}

TEST(Regression, CorruptJpegHeaderDoesNotAbort) {
  TempDir dir;
  write_bytes(dir / "a.jpg",
              with_bytes(read_bytes(test::shared("data/hc18_fetal_head/images/hc18_000.jpg")),
                         {{113, 0x05}, {178, 0x98}}));
  EXPECT_THROW(read_image(dir / "a.jpg"), FormatError);
  write_bytes(dir / "cmyk.jpg", std::string("\xff\xd8\xff", 3) + std::string(40, '\0'));
  EXPECT_THROW(read_image(dir / "cmyk.jpg"), FormatError);
}

TEST(Regression, DicomMetaHeaderWithInvalidVrDoesNotAbort) {
  TempDir dir;
  // (0002,0002) MediaStorageSOPClassUID: VR "UI" -> "UB" (GDCM asserted on it).
  const std::string ct = read_bytes(test::shared("data/ct_dicom_seg_dcmqi/ct_dicom/01.dcm"));
  ASSERT_EQ(ct.substr(0xa2, 2), "UI");
  write_bytes(dir / "bad.dcm", with_bytes(ct, {{0xa3, 'B'}}));
  EXPECT_THROW(read_image(dir / "bad.dcm"), FormatError);
}

TEST(Regression, TiffDirectoryLoopIsRefusedNotFollowedForever) {
  TempDir dir;
  const std::string tif = read_bytes(test::fixture("gray16.tif"));
  ASSERT_EQ(tif.substr(0, 4), std::string("II*\0", 4));
  // One IFD at offset 8 with 9 entries; its "next IFD" field points to itself,
  // or into the middle of itself (which made ITK/libtiff spin).
  write_bytes(dir / "self.tif", with_bytes(tif, {{118, 8}, {119, 0}, {120, 0}, {121, 0}}));
  const std::string msg = error_of([&] { read_image(dir / "self.tif"); });
  EXPECT_NE(msg.find("loop"), std::string::npos) << msg;
  write_bytes(dir / "inside.tif", with_bytes(tif, {{118, 0x74}}));
  EXPECT_THROW(read_image(dir / "inside.tif"), FormatError);
  write_bytes(dir / "past.tif", with_bytes(tif, {{4, 0xff}, {5, 0xff}}));
  EXPECT_THROW(read_image(dir / "past.tif"), FormatError);
}

}  // namespace
}  // namespace medicosam::io
