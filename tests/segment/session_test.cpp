// Interactive session logic against the oracle: prompts per slice, stop
// annotations, propagation, the overlap policy, multi-level undo/redo,
// autosave/restore and scripted actions.
#include "medicosam/segment/session.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "oracle.hpp"

namespace medicosam::segment {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::Disc;
using testing::label_mask;
using testing::make_truth;
using testing::OracleStack;

constexpr int kH = 40, kW = 56, kZ = 12;

// Object A (label 1): slices 2..9 at x=18; object B (label 2): slices 0..11 at x=30, overlapping A.
std::vector<testing::LabelSlice> truth() {
  auto a =
      make_truth(kZ, kH, kW, {{1, 18, 20, [](int z) { return z >= 2 && z <= 9 ? 9.0 : 0.0; }}});
  auto b = make_truth(kZ, kH, kW, {{2, 30, 20, [](int) { return 9.0; }}});
  // The oracle sees them as separate layers: A where A, else B (A on top).
  for (int z = 0; z < kZ; ++z)
    for (size_t i = 0; i < a[z].size(); ++i)
      if (!a[z][i]) a[z][i] = b[z][i];
  return a;
}

int64_t count(const std::vector<uint16_t>& v, uint16_t l) {
  return std::count(v.begin(), v.end(), l);
}

struct Fixture {
  std::vector<testing::LabelSlice> t = truth();
  OracleStack oracle{t, kH, kW};
  Session s{oracle};
};

TEST(Session, PointsBoxesAndPropagationBuildTheObject) {
  Fixture f;
  EXPECT_THROW(f.s.add_point(5, {18, 20, 1}), InputError);  // no object yet
  EXPECT_EQ(f.s.new_object("lesion"), 1);
  f.s.add_point(5, {18, 20, 1});
  EXPECT_EQ(f.s.current_mask(5).data, label_mask(f.t[5], kH, kW, 1).data);
  // A negative point on A removes it from the oracle's candidates: the mask changes.
  f.s.add_point(5, {18, 20, 0});
  EXPECT_NE(f.s.current_mask(5).data, label_mask(f.t[5], kH, kW, 1).data);
  f.s.remove_point(5, 1);
  EXPECT_EQ(f.s.current_mask(5).data, label_mask(f.t[5], kH, kW, 1).data);
  EXPECT_THROW(f.s.remove_point(5, 7), InputError);
  EXPECT_THROW(f.s.add_point(5, {500, 20, 1}), InputError);  // outside the image
  EXPECT_THROW(f.s.add_point(kZ, {5, 5, 1}), InputError);
  const auto r = f.s.propagate();
  EXPECT_EQ(r.z_min, 2);
  EXPECT_EQ(r.z_max, 9);
  for (int z = 0; z < kZ; ++z)
    EXPECT_EQ(f.s.current_mask(z).data, label_mask(f.t[z], kH, kW, 1).data) << z;
  EXPECT_EQ(f.s.commit(), 1);
  EXPECT_FALSE(f.s.state().current);
  EXPECT_EQ(count(f.s.labels(5), 1), label_mask(f.t[5], kH, kW, 1).area());
}

TEST(Session, CorrectionsRestartPropagationFromThePromptedSlices) {
  Fixture f;
  f.s.new_object();
  f.s.add_point(3, {18, 20, 1});
  f.s.propagate();
  EXPECT_EQ(f.s.current_mask(9).data, label_mask(f.t[9], kH, kW, 1).data);
  // The user corrects slice 8 by prompting it: propagation now runs from 3 and 8:
  // below 3, above 8, and the gap 4..7 from both ends.
  f.s.add_point(8, {18, 20, 1});
  f.oracle.calls.clear();
  const auto r = f.s.propagate();
  // Per round, one slice of each walk: down 2, up 9, gap up 4, gap down 7; then 1, 10, 5, 6.
  const std::vector<int> expected{2, 9, 4, 7, 1, 10, 5, 6};
  EXPECT_EQ(f.oracle.called_slices(), expected);
  EXPECT_EQ(r.z_min, 2);
  EXPECT_EQ(r.z_max, 9);
  // Editing the committed object brings its masks back for another round.
  f.s.commit();
  const auto committed = f.s.label_counts();
  EXPECT_EQ(f.s.edit_object(1), 1);
  EXPECT_TRUE(f.s.label_counts().empty());
  EXPECT_EQ(f.s.current_mask(6).data, label_mask(f.t[6], kH, kW, 1).data);
  EXPECT_THROW(f.s.edit_object(1), InputError);  // one object at a time
  f.s.commit();
  EXPECT_EQ(f.s.label_counts(), committed);
  f.s.undo();
  f.s.undo();
  EXPECT_EQ(f.s.label_counts(), committed);  // before the edit
}

TEST(Session, StopAnnotationBoundsPropagation) {
  Fixture f;
  f.s.new_object();
  f.s.set_box(6, {21, 11, 40, 30});  // object B
  f.s.add_point(3, {2, 2, 0});       // stop below
  f.s.add_point(9, {2, 2, 0});       // stop above
  const auto r = f.s.propagate({});
  EXPECT_EQ(r.z_min, 3);
  EXPECT_EQ(r.z_max, 9);
  for (int z = 0; z < kZ; ++z) EXPECT_EQ(f.s.current_mask(z).empty(), z <= 3 || z >= 9) << z;
}

TEST(Session, CommitKeepsEarlierObjectsUnlessOverwriteIsAsked) {
  Fixture f;
  f.s.new_object("A");
  f.s.add_point(5, {18, 20, 1});
  f.s.commit();
  // B: its own component on slice 5, and A's shape on slice 6 where nothing is committed yet.
  f.s.new_object("B");
  f.s.add_point(5, {30, 20, 1});
  const auto a_before = count(f.s.labels(5), 1);
  f.s.add_point(6, {18, 20, 1});
  f.s.commit();  // default: A's voxels stay A
  EXPECT_EQ(count(f.s.labels(5), 1), a_before);
  EXPECT_EQ(count(f.s.labels(6), 2), label_mask(f.t[6], kH, kW, 1).area());  // slice 6 had no A yet
  // A third object over A's slice-5 pixels gets none of them; with overwrite it takes them.
  f.s.new_object("C");
  f.s.add_point(5, {18, 20, 1});
  f.s.commit(/*overwrite=*/false);
  EXPECT_EQ(count(f.s.labels(5), 3), 0);
  f.s.new_object("D");
  f.s.add_point(5, {18, 20, 1});
  EXPECT_EQ(f.s.commit(/*overwrite=*/true), 4);
  EXPECT_EQ(count(f.s.labels(5), 4), a_before);
  EXPECT_EQ(count(f.s.labels(5), 1), 0);
}

TEST(Session, MultiLevelUndoRedo) {
  Fixture f;
  f.s.new_object();
  f.s.add_point(5, {18, 20, 1});
  f.s.propagate();
  f.s.commit();
  ASSERT_EQ(f.s.undo_depth(), 4u);
  EXPECT_EQ(f.s.label_counts().size(), 1u);
  EXPECT_TRUE(f.s.undo());  // commit undone: object is current again
  EXPECT_TRUE(f.s.label_counts().empty());
  ASSERT_TRUE(f.s.state().current);
  EXPECT_FALSE(f.s.current_mask(3).empty());
  EXPECT_TRUE(f.s.undo());  // propagation undone
  EXPECT_TRUE(f.s.current_mask(3).empty());
  EXPECT_FALSE(f.s.current_mask(5).empty());
  EXPECT_TRUE(f.s.undo());  // point undone
  EXPECT_TRUE(f.s.current_mask(5).empty());
  EXPECT_TRUE(f.s.undo());  // new_object undone
  EXPECT_FALSE(f.s.state().current);
  EXPECT_FALSE(f.s.undo());
  EXPECT_TRUE(f.s.redo());
  EXPECT_TRUE(f.s.redo());
  EXPECT_TRUE(f.s.redo());
  EXPECT_FALSE(f.s.current_mask(3).empty());
  // A new action drops the redo history.
  f.s.clear_slice(3);
  EXPECT_EQ(f.s.redo_depth(), 0u);
  EXPECT_FALSE(f.s.redo());
  // Deleting a committed object is undoable too.
  f.s.commit();
  f.s.delete_object(1);
  EXPECT_TRUE(f.s.label_counts().empty());
  f.s.undo();
  EXPECT_EQ(f.s.label_counts().size(), 1u);
}

TEST(Session, AutosaveAfterEveryChangeAndRestore) {
  const auto path =
      (fs::temp_directory_path() / ("medicosam_session_" + std::to_string(::getpid()) + ".json"))
          .string();
  std::map<uint16_t, int64_t> committed;
  {
    Fixture f;
    f.s.set_autosave(path);
    f.s.new_object("A");
    f.s.add_point(5, {18, 20, 1});
    f.s.propagate();
    f.s.commit();
    f.s.new_object("B");
    f.s.set_box(4, {21, 11, 40, 30});
    committed = f.s.label_counts();
    // A failing action leaves the autosaved state as it was.
    const auto before = read_file(path);
    EXPECT_THROW(f.s.apply(json{{"action", "set_box"}, {"slice", 4}, {"box", {1, 2, 3}}}),
                 InputError);
    EXPECT_EQ(read_file(path), before);
  }  // "crash": the session is gone
  Fixture g;
  g.s.restore(path);
  EXPECT_EQ(g.s.label_counts(), committed);
  ASSERT_TRUE(g.s.state().current);
  EXPECT_EQ(g.s.state().current->name, "B");
  EXPECT_EQ(g.s.current_mask(4).data, label_mask(g.t[4], kH, kW, 2).data);
  EXPECT_EQ(g.s.state().names.at(1), "A");
  // The restored session continues.
  g.s.propagate();
  EXPECT_EQ(g.s.commit(), 2);
  // A state for another image is refused.
  OracleStack other(std::vector<testing::LabelSlice>(3, testing::LabelSlice(kH * kW, 0)), kH, kW);
  Session h(other);
  EXPECT_THROW(h.restore(path), InputError);
  fs::remove(path);
}

TEST(Session, ScriptedActions) {
  Fixture f;
  const json script = json::parse(R"([
    {"action": "new_object", "name": "tumour"},
    {"action": "add_point", "slice": 5, "x": 18, "y": 20},
    {"action": "add_point", "slice": 5, "x": 2, "y": 2, "label": 0},
    {"action": "remove_point", "slice": 5, "x": 3, "y": 3},
    {"action": "propagate", "projection": "mask", "iou_threshold": 0.6},
    {"action": "commit"},
    {"action": "undo"},
    {"action": "redo"}
  ])");
  std::vector<json> results;
  for (const auto& a : script) results.push_back(f.s.apply(a));
  EXPECT_EQ(results[1]["mask_pixels"], label_mask(f.t[5], kH, kW, 1).area());
  EXPECT_EQ(results[4]["z_min"], 2);
  EXPECT_EQ(results[4]["z_max"], 9);
  EXPECT_EQ(results[5]["label"], 1);
  EXPECT_EQ(f.s.state().names.at(1), "tumour");
  EXPECT_THROW(f.s.apply(json{{"action", "paint"}}), InputError);
  EXPECT_THROW(f.s.apply(json{{"action", "add_point"}, {"slice", 1}}),
               InputError);  // no current object / x
  EXPECT_THROW(f.s.apply(json{{"action", "propagate"}, {"projection", "lasso"}}), InputError);
  try {
    f.s.apply(json{{"action", "add_point"}, {"slice", "five"}, {"x", 1}, {"y", 1}});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("add_point"), std::string::npos);
  }
}

}  // namespace
}  // namespace medicosam::segment
