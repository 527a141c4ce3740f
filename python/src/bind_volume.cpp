// Volumes, the embedding cache and propagation through a volume:
// medicosam.Volume / read_volume / EmbeddingCache / segment_slice /
// segment_mask_in_volume (micro_sam's arguments).
#include <chrono>
#include <cstring>

#include "common.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/io/geometry.hpp"
#include "medicosam/io/read.hpp"
#include "medicosam/io/slice.hpp"
#include "medicosam/segment/embedding_cache.hpp"
#include "medicosam/segment/propagation.hpp"

namespace medicosam::python {
namespace {

using VolumePtr = std::shared_ptr<io::Volume>;

std::vector<py::ssize_t> array_shape(const io::Volume& v) {
  std::vector<py::ssize_t> s;
  if (!v.is_2d()) s.push_back(v.depth());
  s.push_back(v.height());
  s.push_back(v.width());
  if (v.components() > 1) s.push_back(v.components());
  return s;
}

// Zero-copy view of the voxels, keeping the Volume object alive.
py::array volume_array(py::object self) {
  auto& v = self.cast<io::Volume&>();
  return py::array(py::dtype(io::pixel_type_name(v.pixel_type())), array_shape(v), {}, v.data(), self);
}

io::PixelType pixel_type_of(const py::array& a, py::array& converted) {
  const auto dt = a.dtype();
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  converted = a;
  if (kind == 'b') {
    converted = py::array_t<uint8_t, py::array::forcecast>::ensure(a);
    return io::PixelType::kUInt8;
  }
  if (kind == 'u' && size == 1) return io::PixelType::kUInt8;
  if (kind == 'i' && size == 1) return io::PixelType::kInt8;
  if (kind == 'u' && size == 2) return io::PixelType::kUInt16;
  if (kind == 'i' && size == 2) return io::PixelType::kInt16;
  if (kind == 'u' && size == 4) return io::PixelType::kUInt32;
  if (kind == 'i' && size == 4) return io::PixelType::kInt32;
  if (kind == 'f' && size == 4) return io::PixelType::kFloat32;
  if (kind == 'f' && size == 8) return io::PixelType::kFloat64;
  if ((kind == 'i' || kind == 'u' || kind == 'f') && size <= 8) {  // int64, float16, ...
    converted = py::array_t<double, py::array::forcecast>::ensure(a);
    return io::PixelType::kFloat64;
  }
  throw InputError("Volume: unsupported dtype " + py::str(py::handle(dt)).cast<std::string>() + " (use an integer or float array)");
}

std::array<double, 3> triple(const py::object& o, std::array<double, 3> dflt, const std::string& what) {
  if (o.is_none()) return dflt;
  auto v = o.cast<std::vector<double>>();
  if (v.size() == 2) v.push_back(dflt[2]);
  if (v.size() != 3) throw InputError(what + ": expected 3 values (x, y, z)");
  return {v[0], v[1], v[2]};
}

VolumePtr volume_from_array(const py::array& array, const py::object& spacing, const py::object& origin,
                            const py::object& direction, bool rgb) {
  py::array a;
  const auto type = pixel_type_of(array, a);
  a = py::array::ensure(a, py::array::c_style);
  const int comps = rgb ? 3 : 1;
  const int spatial = static_cast<int>(a.ndim()) - (rgb ? 1 : 0);
  if (rgb && (a.ndim() < 3 || a.shape(a.ndim() - 1) != 3)) {
    throw InputError("Volume(rgb=True): expected a last axis of 3 channels, got shape " + shape_string(a));
  }
  if (spatial != 2 && spatial != 3) {
    throw InputError("Volume: expected a (Z, Y, X) volume or a (Y, X) image" +
                     std::string(rgb ? " with a channel axis" : "") + ", got shape " + shape_string(a));
  }
  io::Geometry g;
  g.size = {spatial == 3 ? a.shape(2) : a.shape(1), spatial == 3 ? a.shape(1) : a.shape(0),
            spatial == 3 ? a.shape(0) : 1};
  if (g.num_voxels() <= 0) throw InputError("Volume: empty array of shape " + shape_string(a));
  g.spacing = triple(spacing, {1, 1, 1}, "spacing");
  g.origin = triple(origin, {0, 0, 0}, "origin");
  if (!direction.is_none()) {
    auto d = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(direction);
    if (!d || d.size() != 9) throw InputError("direction: expected a 3x3 matrix");
    std::copy(d.data(), d.data() + 9, g.direction.begin());
  }
  auto v = std::make_shared<io::Volume>(type, g, comps);
  std::memcpy(v->data(), a.data(), v->num_bytes());
  v->format = "array";
  return v;
}

VolumePtr as_volume(const py::handle& obj, py::object& keep) {
  if (py::isinstance<io::Volume>(obj)) {
    keep = py::reinterpret_borrow<py::object>(obj);
    return obj.cast<VolumePtr>();
  }
  py::array a = py::array::ensure(obj);
  if (!a) throw InputError("expected a medicosam.Volume or a NumPy array (Z, Y, X) / (Y, X)");
  auto v = volume_from_array(a, py::none(), py::none(), py::none(), false);
  keep = py::cast(v);
  return v;
}

segment::BinaryMask mask_from(const py::handle& obj, predict::Size2 size, const std::string& what) {
  auto a = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(
      py::module_::import("numpy").attr("not_equal")(obj, 0));
  if (!a || a.ndim() != 2 || a.shape(0) != size.height || a.shape(1) != size.width) {
    throw InputError(what + ": expected a (" + std::to_string(size.height) + ", " + std::to_string(size.width) +
                     ") mask, got " + (a ? shape_string(a) : std::string("something else")));
  }
  return segment::BinaryMask(size.height, size.width, std::vector<uint8_t>(a.data(), a.data() + a.size()));
}

// A volume (or 2D image), its slices as the model sees them and their embedding cache.
class PyCache {
 public:
  PyCache(py::object model, const py::handle& volume, const std::string& path, const std::string& axis,
          const std::string& normalize, bool fp16, const std::string& compressor, bool square_pixels)
      : model_(model_of(model, "EmbeddingCache(model)")) {
    volume_ = as_volume(volume, volume_obj_);
    segment::CacheOptions co;
    co.fp16 = fp16;
    co.compressor = compressor;
    const auto norm = io::parse_normalization(normalize.empty() ? "minmax" : normalize);
    const auto ax = io::parse_axis(axis);
    py::gil_scoped_release nogil;
    slices_ = std::make_unique<segment::VolumeSlices>(*volume_, ax, norm, square_pixels);
    std::lock_guard<std::mutex> lock(model_->mutex);
    cache_ = std::make_unique<segment::EmbeddingCache>(segment::open_cache(*model_->predictor, *slices_, path, co));
  }

  // Embeds every missing slice, writing each as soon as it is done (an
  // interrupted run resumes); Ctrl-C stops between slices.
  py::dict compute(bool progress) {
    int computed = 0, reused = 0;
    double seconds = 0;
    {
      py::gil_scoped_release nogil;
      std::vector<int> todo;
      for (int z = 0; z < slices_->count(); ++z) {
        if (cache_->has(z)) {
          ++reused;
        } else {
          todo.push_back(z);
        }
      }
      if (!todo.empty()) {
        Progress bar(slices_->count(), "embedding " + std::to_string(slices_->count()) + " slices", progress, reused);
        for (int z : todo) {
          check_interrupt();
          const auto img = slices_->model_image(z);
          const auto t0 = std::chrono::steady_clock::now();
          predict::Embedding e;
          {
            std::lock_guard<std::mutex> lock(model_->mutex);
            e = model_->predictor->encode(img.data.data(), img.height, img.width, 3);
          }
          seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          cache_->store(z, e);
          ++computed;
          bar.advance();
        }
        bar.finish();
      }
      if (!cache_->complete()) cache_->mark_complete();
    }
    py::dict d;
    d["computed"] = computed;
    d["reused"] = reused;
    d["seconds"] = seconds;
    return d;
  }

  void check_z(int z) const {
    if (z < 0 || z >= slices_->count()) {
      throw InputError("slice " + std::to_string(z) + " is outside 0.." + std::to_string(slices_->count() - 1));
    }
  }
  predict::Embedding embedding(int z) const {
    check_z(z);
    if (!cache_->has(z)) {
      throw InputError("slice " + std::to_string(z) + " is not in the cache '" + cache_->dir() +
                       "' yet: call compute() first");
    }
    py::gil_scoped_release nogil;
    return cache_->load(z);
  }
  py::array model_image(int z) const {
    check_z(z);
    auto img = slices_->model_image(z);
    const py::ssize_t H = img.height, W = img.width;
    return to_array(std::move(img.data), {H, W, 3});
  }

  predict::Prompt prompt_from(const py::object& coords, const py::object& labels, const py::object& box) const {
    predict::Prompt p;
    if (!coords.is_none()) {
      if (labels.is_none()) throw InputError("point_labels must be supplied if point_coords is supplied.");
      auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(coords);
      auto l = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(labels);
      if (!c || c.ndim() != 2 || c.shape(1) != 2) throw InputError("point_coords: expected shape (N, 2) (x, y)");
      if (!l || l.ndim() != 1 || l.shape(0) != c.shape(0)) {
        throw InputError("point_labels: expected shape (N,) matching point_coords");
      }
      for (py::ssize_t i = 0; i < c.shape(0); ++i) {
        if (l.at(i) != 0 && l.at(i) != 1) throw InputError("point_labels must be 1 (object) or 0 (background)");
        p.points.push_back({c.at(i, 0), c.at(i, 1), static_cast<int>(l.at(i))});
      }
    }
    if (!box.is_none()) {
      auto b = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(box);
      if (!b || b.size() != 4) throw InputError("box: expected (x0, y0, x1, y1)");
      p.box = predict::Box{b.data()[0], b.data()[1], b.data()[2], b.data()[3]};
    }
    if (p.empty()) throw InputError("no prompt given: pass point_coords + point_labels and/or a box");
    predict::validate_prompt(p, slices_->slice_size());
    return p;
  }

  // micro_sam's segment_from_points / segment_from_box on slice z (x, y in
  // slice pixels): a single positive point picks the best of 3 masks.
  py::array segment_slice(const py::handle& predictor, int z, const py::object& coords, const py::object& labels,
                          const py::object& box) {
    check_z(z);
    const auto prompt = prompt_from(coords, labels, box);
    auto model = model_of(predictor, "segment_slice(predictor)");
    segment::BinaryMask mask;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model->mutex);
      segment::CachedSliceSegmenter seg(*model->predictor, *cache_);
      if (!cache_->has(z)) throw InputError("slice " + std::to_string(z) + " is not in the cache yet: call compute()");
      mask = slices_->mask_to_slice(segment::segment_from_prompt(seg, z, slices_->prompt_to_model(prompt)));
    }
    const py::ssize_t H = mask.height, W = mask.width;
    return to_array(std::move(mask.data), {H, W});
  }

  py::tuple propagate(py::object segmentation, const py::handle& predictor, std::vector<int> segmented_slices,
                      bool stop_lower, bool stop_upper, double iou_threshold, const py::object& projection,
                      const py::object& update_progress, double box_extension) {
    auto model = model_of(predictor, "segment_mask_in_volume(predictor)");
    py::array seg = py::array::ensure(segmentation);
    const auto ss = slices_->slice_size();
    if (!seg || seg.ndim() != 3 || seg.shape(0) != slices_->count() || seg.shape(1) != ss.height ||
        seg.shape(2) != ss.width) {
      throw InputError("segmentation: expected shape (" + std::to_string(slices_->count()) + ", " +
                       std::to_string(ss.height) + ", " + std::to_string(ss.width) + ") like the embedded volume, got " +
                       (seg ? shape_string(seg) : std::string("a non-array")));
    }
    if (!seg.writeable()) throw InputError("segmentation: the array is read-only (it is updated in place)");
    segment::PropagationOptions o;
    if (py::isinstance<py::str>(projection)) {
      o.projection = segment::projection_flags(segment::parse_projection(projection.cast<std::string>()));
    } else if (py::isinstance<py::dict>(projection)) {
      auto d = projection.cast<py::dict>();
      for (auto item : d) {
        const auto k = item.first.cast<std::string>();
        if (k != "use_box" && k != "use_mask" && k != "use_points" && k != "use_single_point") {
          throw InputError("projection: unknown key '" + k + "' (use_box, use_mask, use_points, use_single_point)");
        }
      }
      o.projection.use_box = d.contains("use_box") && d["use_box"].cast<bool>();
      o.projection.use_mask = d.contains("use_mask") && d["use_mask"].cast<bool>();
      o.projection.use_points = d.contains("use_points") && d["use_points"].cast<bool>();
      o.projection.single_point = d.contains("use_single_point") && d["use_single_point"].cast<bool>();
    } else {
      throw InputError("projection: expected a name (box, mask, points, points_and_mask, single_point) or a dict");
    }
    o.iou_threshold = iou_threshold;
    o.box_extension = box_extension;
    o.stop_lower = stop_lower;
    o.stop_upper = stop_upper;
    const auto ms = slices_->model_size();
    std::vector<segment::BinaryMask> masks(slices_->count(), segment::BinaryMask(ms.height, ms.width));
    for (int z : segmented_slices) {
      check_z(z);
      masks[z] = slices_->mask_to_model(mask_from(seg[py::int_(z)], ss, "segmentation[" + std::to_string(z) + "]"));
    }
    o.on_slice = [&](int) {
      check_interrupt();
      if (!update_progress.is_none()) {
        py::gil_scoped_acquire gil;
        update_progress(1);
      }
    };
    segment::PropagationResult r;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model->mutex);
      segment::CachedSliceSegmenter s(*model->predictor, *cache_);
      r = segment::segment_mask_in_volume(s, masks, segmented_slices, o);
    }
    for (const auto& step : r.steps) {
      if (!step.written) continue;
      auto m = slices_->mask_to_slice(masks[step.z]);
      seg[py::int_(step.z)] = to_bool_array(std::move(m.data), {ss.height, ss.width});
    }
    return py::make_tuple(segmentation, py::make_tuple(r.z_min, r.z_max));
  }

  // Slice-grid masks (Z, H, W), nonzero = object, as a uint16 label map on the volume's geometry.
  VolumePtr to_volume(const py::handle& segmentation, int label) const {
    if (label < 1 || label > 65535) throw InputError("label must be in 1..65535");
    const auto ss = slices_->slice_size();
    auto a = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(
        py::module_::import("numpy").attr("not_equal")(segmentation, 0));
    if (!a || a.ndim() != 3 || a.shape(0) != slices_->count() || a.shape(1) != ss.height || a.shape(2) != ss.width) {
      throw InputError("segmentation: expected shape (" + std::to_string(slices_->count()) + ", " +
                       std::to_string(ss.height) + ", " + std::to_string(ss.width) + ")");
    }
    io::LabelMap labels(volume_->geometry());
    const size_t n = static_cast<size_t>(ss.height) * ss.width;
    for (int z = 0; z < slices_->count(); ++z) {
      const uint8_t* d = a.data() + n * z;
      io::Mask2D m{ss.height, ss.width, std::vector<uint8_t>(d, d + n)};
      io::paste_slice(labels, slices_->placement(z), m, static_cast<uint16_t>(label), true);
    }
    return std::make_shared<io::Volume>(labels.to_volume(io::PixelType::kUInt16));
  }

  const segment::VolumeSlices& slices() const { return *slices_; }
  const segment::EmbeddingCache& cache() const { return *cache_; }
  py::object volume() const { return volume_obj_; }

 private:
  std::shared_ptr<SamModel> model_;
  py::object volume_obj_;
  VolumePtr volume_;
  std::unique_ptr<segment::VolumeSlices> slices_;
  std::unique_ptr<segment::EmbeddingCache> cache_;
};

py::tuple size_tuple(predict::Size2 s) { return py::make_tuple(s.height, s.width); }

}  // namespace

std::shared_ptr<io::Volume> volume_argument(const py::handle& obj, py::object& keep) { return as_volume(obj, keep); }

void bind_volume(py::module_& m) {
  py::class_<io::Volume, VolumePtr>(m, "Volume",
                                    "Voxels with their geometry (LPS). `array` is (Z, Y, X) for volumes, (Y, X) for "
                                    "2D images (+ a channel axis for RGB), as SimpleITK's GetArrayFromImage.")
      .def(py::init(&volume_from_array), py::arg("array"), py::arg("spacing") = py::none(),
           py::arg("origin") = py::none(), py::arg("direction") = py::none(), py::arg("rgb") = false,
           "A volume from a (Z, Y, X) or (Y, X) array (copied); spacing/origin in x, y, z order (mm).")
      .def_property_readonly("array", &volume_array, "The voxels (a view, no copy).")
      .def_property_readonly("shape", [](const io::Volume& v) { return py::tuple(py::cast(array_shape(v))); })
      .def_property_readonly("dtype", [](const io::Volume& v) { return py::dtype(io::pixel_type_name(v.pixel_type())); })
      .def_property_readonly("spacing", [](const io::Volume& v) { return v.geometry().spacing; })
      .def_property_readonly("origin", [](const io::Volume& v) { return v.geometry().origin; })
      .def_property_readonly("direction",
                             [](const io::Volume& v) {
                               const auto& d = v.geometry().direction;
                               return to_array(std::vector<double>(d.begin(), d.end()), {3, 3});
                             })
      .def_property_readonly("size", [](const io::Volume& v) { return v.size(); }, "Voxels along x, y, z.")
      .def_property_readonly("orientation", [](const io::Volume& v) { return io::orientation_code(v.geometry()); })
      .def_property_readonly("is_2d", &io::Volume::is_2d)
      .def_property_readonly("format", [](const io::Volume& v) { return v.format; })
      .def_property_readonly("modality", [](const io::Volume& v) { return v.modality; })
      .def_property_readonly("series_uid", [](const io::Volume& v) { return v.series_uid; })
      .def("num_slices",
           [](const io::Volume& v, const std::string& axis) {
             return io::num_slices(v.geometry(), io::parse_axis(axis));
           },
           py::arg("axis") = "axial")
      .def("__repr__", [](const io::Volume& v) {
        return "<medicosam.Volume " + io::to_string(v.geometry()) + " " + io::pixel_type_name(v.pixel_type()) +
               (v.format.empty() ? "" : " from " + v.format) + ">";
      });

  m.def(
      "read_volume",
      [](const std::string& path, const std::string& series) {
        io::ReadOptions ro;
        ro.series_uid = series;
        py::gil_scoped_release nogil;
        return std::make_shared<io::Volume>(io::read_image(path, ro));
      },
      py::arg("path"), py::arg("series") = "",
      "Reads NIfTI, NRRD, MetaImage, a DICOM folder or a 2D PNG/JPEG/TIFF/BMP with its geometry.");

  py::class_<PyCache>(m, "EmbeddingCache",
                      "Embeddings of every slice of a volume in micro_sam's zarr layout (shared with the CLI's "
                      "--cache and with micro_sam).")
      .def(py::init<py::object, py::handle, std::string, std::string, std::string, bool, std::string, bool>(),
           py::arg("model"), py::arg("volume"), py::arg("path"), py::arg("axis") = "axial",
           py::arg("normalize") = "minmax", py::arg("fp16") = false, py::arg("compressor") = "",
           py::arg("square_pixels") = true)
      .def("compute", &PyCache::compute, py::arg("progress") = true,
           "Embeds the missing slices (resumable; Ctrl-C stops between slices).")
      .def("embedding", &PyCache::embedding, py::arg("i"), "ImageEmbedding of slice i (for SamPredictor.set_embedding).")
      .def("model_image", &PyCache::model_image, py::arg("i"), "Slice i as the model sees it (uint8 HxWx3).")
      .def("has", [](const PyCache& c, int z) { return c.cache().has(z); }, py::arg("i"))
      .def("__len__", [](const PyCache& c) { return c.slices().count(); })
      .def_property_readonly("num_slices", [](const PyCache& c) { return c.slices().count(); })
      .def_property_readonly("complete", [](const PyCache& c) { return c.cache().complete(); })
      .def_property_readonly("path", [](const PyCache& c) { return c.cache().dir(); })
      .def_property_readonly("dtype", [](const PyCache& c) { return c.cache().dtype(); })
      .def_property_readonly("written_by_micro_sam", [](const PyCache& c) { return c.cache().written_by_micro_sam(); })
      .def_property_readonly("slice_size", [](const PyCache& c) { return size_tuple(c.slices().slice_size()); })
      .def_property_readonly("model_size", [](const PyCache& c) { return size_tuple(c.slices().model_size()); })
      .def_property_readonly("axis", [](const PyCache& c) { return std::string(io::axis_name(c.slices().axis())); })
      .def_property_readonly("volume", &PyCache::volume)
      .def("to_volume", &PyCache::to_volume, py::arg("segmentation"), py::arg("label") = 1,
           "Slice-grid masks (Z, H, W) as a uint16 label Volume on the volume's geometry.")
      .def("_segment_slice", &PyCache::segment_slice)
      .def("_propagate", &PyCache::propagate);
}

}  // namespace medicosam::python
