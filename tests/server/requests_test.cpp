// The server's request parsers (server/requests.hpp): what a client can send
// and the errors it gets back.
#include "medicosam/server/requests.hpp"

#include <gtest/gtest.h>

namespace medicosam::server {
namespace {
using nlohmann::json;

int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.status();
  }
  return 0;
}

TEST(ServerRequests, IdsCannotLeaveTheDatastore) {
  for (const char* ok : {"brain1", "case_01.v2", "A-b_c", "x"}) EXPECT_TRUE(is_valid_id(ok)) << ok;
  for (std::string bad : {"", "..", "../x", "a/b", "/etc/passwd", ".hidden", "a..b", "a b", "a\\b", "ü"})
    EXPECT_FALSE(is_valid_id(bad)) << bad;
  EXPECT_FALSE(is_valid_id(std::string("a\0b", 3)));
  EXPECT_FALSE(is_valid_id(std::string(201, 'a')));
  try {
    check_id(std::string("../\0x", 5), "image id");
    FAIL();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("image id '../?x' is not valid"), std::string::npos) << e.what();
  }
}

TEST(ServerRequests, InferParamsAsSlicerSendsThem) {
  const auto p = parse_infer_params(json::parse(
      R"({"label":"tumour","foreground":[[10,20,3],[11.0,21,3]],"background":[["12","22","3"]],
          "roi":[50,40,30,60,3,3],"slice":3,"device":["cuda","cpu"],"result_extension":".nrrd"})"));
  ASSERT_EQ(p.foreground.size(), 2u);
  EXPECT_EQ(p.foreground[1], (Voxel{11, 21, 3}));
  EXPECT_EQ(p.background[0], (Voxel{12, 22, 3}));
  ASSERT_TRUE(p.roi);
  EXPECT_EQ(*p.roi, (std::array<int64_t, 6>{40, 50, 30, 60, 3, 3})) << "inverted pairs are sorted";
  EXPECT_EQ(p.slice, 3);
  EXPECT_EQ(p.label, "tumour");
  EXPECT_EQ(p.result_extension, ".nrrd");
  const auto empty = parse_infer_params(json::object());
  EXPECT_TRUE(empty.foreground.empty());
  EXPECT_FALSE(empty.roi);
  EXPECT_EQ(parse_infer_params(json::parse(R"({"roi":[]})")).roi, std::nullopt);
}

TEST(ServerRequests, MalformedInferParamsAre400) {
  for (const char* bad : {R"({"foreground":[[1,2]]})", R"({"foreground":[1,2,3]})", R"({"foreground":"x"})",
                          R"({"roi":[1,2,3]})", R"({"slice":"abc"})", R"({"foreground":[[1e300,1,1]]})",
                          R"({"result_extension":".exe"})", R"({"result_dtype":"float64"})"}) {
    EXPECT_EQ(status_of([&] { parse_infer_params(json::parse(bad)); }), 400) << bad;
  }
  EXPECT_EQ(status_of([] { parse_json_object("{nope", "params"); }), 400);
  EXPECT_EQ(status_of([] { parse_json_object("[1,2]", "params"); }), 400);
  EXPECT_EQ(parse_json_object("", "params"), json::object());
}

TEST(ServerRequests, SizesAndBinLabels) {
  EXPECT_EQ(parse_size("2G", "x"), uint64_t{2} << 30);
  EXPECT_EQ(parse_size("512M", "x"), uint64_t{512} << 20);
  EXPECT_EQ(parse_size("700MB", "x"), uint64_t{700} << 20);
  EXPECT_EQ(parse_size("1000", "x"), 1000u);
  for (const char* bad : {"", "G", "-1G", "2X", "1e30T"}) EXPECT_EQ(status_of([&] { parse_size(bad, "x"); }), 400) << bad;
  const auto v = decode_bin_label(std::string("\x00\x01\x02\xff\x00\x00", 6), {3, 2, 1});
  EXPECT_EQ(v, (std::vector<uint16_t>{0, 1, 2, 255, 0, 0}));
  EXPECT_EQ(status_of([] { decode_bin_label("abc", {2, 2, 1}); }), 400);
}

TEST(ServerRequests, NativePointAndBoxBodies) {
  auto p = parse_point_request(json::parse(R"({"voxel":[1,2,3],"positive":false})"));
  EXPECT_EQ(p.voxel, (Voxel{1, 2, 3}));
  EXPECT_FALSE(p.positive);
  p = parse_point_request(json::parse(R"({"slice":4,"x":10.5,"y":3})"));
  EXPECT_EQ(p.slice, 4);
  EXPECT_DOUBLE_EQ(p.x, 10.5);
  EXPECT_TRUE(p.positive);
  EXPECT_FALSE(parse_point_request(json::parse(R"({"voxel":[1,2,3],"include_interaction":false})")).positive);
  auto b = parse_box_request(json::parse(R"({"voxels":[[1,2,3],[4,5,3]]})"));
  ASSERT_TRUE(b.voxels);
  EXPECT_EQ((*b.voxels)[1], (Voxel{4, 5, 3}));
  b = parse_box_request(json::parse(R"({"slice":2,"box":[1,2,3,4]})"));
  EXPECT_EQ(b.box[3], 4);
  for (const char* bad : {R"({})", R"({"voxel":[1,2]})", R"({"slice":1,"x":"a","y":1})", R"({"voxel":[1,2,3],"positive":"maybe"})"})
    EXPECT_EQ(status_of([&] { parse_point_request(json::parse(bad)); }), 400) << bad;
  for (const char* bad : {R"({})", R"({"voxels":[[1,2,3]]})", R"({"slice":1,"box":[1,2,3]})"})
    EXPECT_EQ(status_of([&] { parse_box_request(json::parse(bad)); }), 400) << bad;
}

TEST(ServerRequests, Base64MatchesRfc4648) {
  auto enc = [](const std::string& s) { return base64_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
  EXPECT_EQ(enc(""), "");
  EXPECT_EQ(enc("f"), "Zg==");
  EXPECT_EQ(enc("fo"), "Zm8=");
  EXPECT_EQ(enc("foo"), "Zm9v");
  EXPECT_EQ(enc("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace medicosam::server
