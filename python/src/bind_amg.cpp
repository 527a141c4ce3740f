// medicosam.SamAutomaticMaskGenerator: segment_anything's automatic mask
// generator API over medicosam::segment::generate_masks.
#include "common.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/segment/amg.hpp"

namespace medicosam::python {
namespace {

// uncompressed RLE as segment_anything's mask_to_rle_pytorch: counts of runs
// in column-major (Fortran) order, starting with a run of zeros.
py::dict uncompressed_rle(const segment::BinaryMask& m) {
  std::vector<int64_t> counts;
  uint8_t cur = 0;
  int64_t run = 0;
  for (int x = 0; x < m.width; ++x) {
    for (int y = 0; y < m.height; ++y) {
      const uint8_t v = m.at(y, x) ? 1 : 0;
      if (v != cur) {
        counts.push_back(run);
        run = 0;
        cur = v;
      }
      ++run;
    }
  }
  counts.push_back(run);
  py::dict d;
  d["size"] = std::vector<int>{m.height, m.width};
  d["counts"] = counts;
  return d;
}

class PyMaskGenerator {
 public:
  PyMaskGenerator(py::object model, int points_per_side, int points_per_batch, double pred_iou_thresh,
                  double stability_score_thresh, double stability_score_offset, double box_nms_thresh,
                  int crop_n_layers, double crop_nms_thresh, double crop_overlap_ratio,
                  int crop_n_points_downscale_factor, const py::object& point_grids, int min_mask_region_area,
                  const std::string& output_mode)
      : model_(model_of(model, "SamAutomaticMaskGenerator(model)")), output_mode_(output_mode) {
    if (!point_grids.is_none()) {
      throw InputError("point_grids: custom point grids are not supported; use points_per_side");
    }
    if (output_mode != "binary_mask" && output_mode != "uncompressed_rle") {
      throw InputError("output_mode '" + output_mode + "': expected 'binary_mask' or 'uncompressed_rle'");
    }
    if (points_per_side < 1) throw InputError("points_per_side must be >= 1");
    if (points_per_batch < 1) throw InputError("points_per_batch must be >= 1");
    if (crop_n_layers < 0) throw InputError("crop_n_layers must be >= 0");
    if (crop_n_points_downscale_factor < 1) throw InputError("crop_n_points_downscale_factor must be >= 1");
    if (min_mask_region_area < 0) throw InputError("min_mask_region_area must be >= 0");
    o_.points_per_side = points_per_side;
    o_.points_per_batch = points_per_batch;
    o_.pred_iou_thresh = pred_iou_thresh;
    o_.stability_score_thresh = stability_score_thresh;
    o_.stability_score_offset = stability_score_offset;
    o_.box_nms_thresh = box_nms_thresh;
    o_.crop_n_layers = crop_n_layers;
    o_.crop_nms_thresh = crop_nms_thresh;
    o_.crop_overlap_ratio = crop_overlap_ratio;
    o_.crop_n_points_downscale_factor = crop_n_points_downscale_factor;
    o_.min_mask_region_area = min_mask_region_area;
  }

  std::vector<segment::AmgMask> run(const py::handle& image, bool progress, int& height, int& width) {
    auto in = image_input(image, "generate");
    // The generator takes RGB: gray is replicated.
    std::vector<uint8_t> rgb;
    const uint8_t* pixels = in.data;
    if (in.channels == 1) {
      rgb.resize(static_cast<size_t>(in.height) * in.width * 3);
      for (size_t i = 0; i < static_cast<size_t>(in.height) * in.width; ++i)
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = in.data[i];
      pixels = rgb.data();
    }
    height = in.height;
    width = in.width;
    std::vector<segment::AmgMask> masks;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(model_->mutex);
      masks = segment::generate_masks(*model_->predictor, pixels, in.height, in.width, o_, progress);
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    return masks;
  }

  py::list generate(const py::handle& image, bool progress) {
    int H = 0, W = 0;
    auto masks = run(image, progress, H, W);
    py::list out;
    for (auto& m : masks) {
      py::dict d;
      if (output_mode_ == "binary_mask") {
        d["segmentation"] = to_bool_array(std::move(m.mask.data), {m.mask.height, m.mask.width});
      } else {
        d["segmentation"] = uncompressed_rle(m.mask);
      }
      d["area"] = m.area;
      d["bbox"] = std::vector<int>(m.bbox.begin(), m.bbox.end());
      d["predicted_iou"] = m.predicted_iou;
      d["point_coords"] = std::vector<std::vector<double>>{{m.point.x, m.point.y}};
      d["stability_score"] = m.stability_score;
      const auto& c = m.crop_box;  // XYXY -> XYWH as segment_anything reports it
      d["crop_box"] = std::vector<int>{c[0], c[1], c[2] - c[0], c[3] - c[1]};
      out.append(d);
    }
    return out;
  }

  py::array generate_labels(const py::handle& image, int64_t min_object_size, bool progress) {
    int H = 0, W = 0;
    const auto masks = run(image, progress, H, W);
    auto labels = segment::masks_to_label_map(masks, H, W, min_object_size);
    return to_array(std::move(labels), {H, W});
  }

  py::dict options() const {
    py::dict d;
    d["points_per_side"] = o_.points_per_side;
    d["points_per_batch"] = o_.points_per_batch;
    d["pred_iou_thresh"] = o_.pred_iou_thresh;
    d["stability_score_thresh"] = o_.stability_score_thresh;
    d["stability_score_offset"] = o_.stability_score_offset;
    d["box_nms_thresh"] = o_.box_nms_thresh;
    d["crop_n_layers"] = o_.crop_n_layers;
    d["crop_nms_thresh"] = o_.crop_nms_thresh;
    d["crop_overlap_ratio"] = o_.crop_overlap_ratio;
    d["crop_n_points_downscale_factor"] = o_.crop_n_points_downscale_factor;
    d["min_mask_region_area"] = o_.min_mask_region_area;
    d["output_mode"] = output_mode_;
    return d;
  }

 private:
  std::shared_ptr<SamModel> model_;
  segment::AmgOptions o_;
  std::string output_mode_;
};

}  // namespace

void bind_amg(py::module_& m) {
  py::class_<PyMaskGenerator>(m, "SamAutomaticMaskGenerator",
                              "segment_anything.SamAutomaticMaskGenerator's API (same defaults and record keys).")
      .def(py::init<py::object, int, int, double, double, double, double, int, double, double, int, py::object, int,
                    std::string>(),
           py::arg("model"), py::arg("points_per_side") = 32, py::arg("points_per_batch") = 64,
           py::arg("pred_iou_thresh") = 0.88, py::arg("stability_score_thresh") = 0.95,
           py::arg("stability_score_offset") = 1.0, py::arg("box_nms_thresh") = 0.7, py::arg("crop_n_layers") = 0,
           py::arg("crop_nms_thresh") = 0.7, py::arg("crop_overlap_ratio") = 512.0 / 1500.0,
           py::arg("crop_n_points_downscale_factor") = 1, py::arg("point_grids") = py::none(),
           py::arg("min_mask_region_area") = 0, py::arg("output_mode") = "binary_mask")
      .def("generate", &PyMaskGenerator::generate, py::arg("image"), py::arg("progress") = false,
           "List of records: segmentation, area, bbox (XYWH), predicted_iou, point_coords, stability_score, "
           "crop_box (XYWH).")
      .def("generate_labels", &PyMaskGenerator::generate_labels, py::arg("image"), py::arg("min_object_size") = 0,
           py::arg("progress") = false,
           "Instance label map (uint16 HxW) as `medicosam amg --out` writes it: larger masks painted first.")
      .def_property_readonly("options", &PyMaskGenerator::options);
}

}  // namespace medicosam::python
