// DICOM SEG writing and reading with DCMTK (dcmseg, dcmfg, dcmiod).
#include "medicosam/io/dicom_seg.hpp"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmfg/fgseg.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/dcmseg/segutils.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::io {

namespace detail {
void quiet_dcmtk_logging();  // dicom.cpp
}

namespace {

std::string quote_name(const std::string& s) {
  return "'" + s + "'";
}

// Decimal strings for DS values: at most 16 characters, as DICOM requires.
std::string ds(double v) {
  char buf[32];
  for (int precision = 15; precision > 4; --precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strlen(buf) <= 16) break;
  }
  return buf;
}

std::string new_uid(const char* root) {
  char uid[100];
  dcmGenerateUniqueIdentifier(uid, root);
  return uid;
}

void check(const OFCondition& c, const std::string& what) {
  if (c.bad()) throw IoError(what + ": " + c.text());
}

std::string upper_cs(std::string s, size_t max_len) {
  for (char& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ' ')) c = '_';
  }
  if (s.size() > max_len) s.resize(max_len);
  return s.empty() ? "MEDICOSAM" : s;
}

DcmSegTypes::E_SegmentAlgoType algo_type(const std::string& s) {
  if (s == "AUTOMATIC") return DcmSegTypes::SAT_AUTOMATIC;
  if (s == "MANUAL") return DcmSegTypes::SAT_MANUAL;
  return DcmSegTypes::SAT_SEMIAUTOMATIC;
}

struct SegDeleter {
  void operator()(DcmSegmentation* s) const { delete s; }
};
using SegPtr = std::unique_ptr<DcmSegmentation, SegDeleter>;

}  // namespace

std::array<uint16_t, 3> rgb_to_dicom_lab(const std::array<uint8_t, 3>& rgb) {
  double L = 0, a = 0, b = 0;
  IODCIELabUtil::rgb2DicomLab(L, a, b, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
  auto clamp16 = [](double v) {
    return static_cast<uint16_t>(std::clamp(std::lround(v), 0L, 65535L));
  };
  return {clamp16(L), clamp16(a), clamp16(b)};
}

std::array<uint8_t, 3> dicom_lab_to_rgb(const std::array<uint16_t, 3>& lab) {
  double r = 0, g = 0, b = 0;
  IODCIELabUtil::dicomLab2RGB(r, g, b, lab[0], lab[1], lab[2]);
  auto clamp8 = [](double v) {
    return static_cast<uint8_t>(std::clamp(std::lround(v * 255.0), 0L, 255L));
  };
  return {clamp8(r), clamp8(g), clamp8(b)};
}

// ---------------------------------------------------------------- writing

void write_dicom_seg(const std::string& path, const LabelMap& labels,
                     const DicomSourceSeries& source, const std::vector<SegmentInfo>& segments,
                     const DicomSegOptions& options) {
  detail::quiet_dcmtk_logging();
  const std::string where = "cannot write DICOM SEG " + quote_name(path);
  if (labels.empty()) throw InputError(where + ": the label map is empty");
  const Geometry& g = labels.geometry();
  if (source.files.empty() || source.sop_instance_uids.size() != static_cast<size_t>(g.size[2]) ||
      source.sop_class_uids.size() != source.sop_instance_uids.size()) {
    throw InputError(where + ": the source series has " +
                     std::to_string(source.sop_instance_uids.size()) + " slices, the label map " +
                     std::to_string(g.size[2]));
  }
  // The label map must be drawn on the source grid (1e-3 mm tolerates a
  // detour through float32 NIfTI).
  if (g.size != source.geometry.size || grid_difference(g, source.geometry) > 1e-3) {
    throw InputError(where + ": the label map (" + to_string(g) +
                     ") is not on the grid of DICOM series " + source.info.series_uid + " (" +
                     to_string(source.geometry) + ")");
  }
  if (g.size[0] > 65535 || g.size[1] > 65535)
    throw InputError(where + ": slices larger than 65535 pixels");

  // Segments: every label present plus any described ones, ascending.
  std::map<uint16_t, SegmentInfo> by_label;
  for (const SegmentInfo& s : labels.effective_segments()) by_label[s.label] = s;
  for (const SegmentInfo& s : segments) {
    if (s.label == 0) throw InputError(where + ": segment label 0 is the background");
    SegmentInfo info = s;
    if (info.name.empty()) info.name = "Segment " + std::to_string(info.label);
    if (info.color == std::array<uint8_t, 3>{0, 0, 0}) info.color = default_label_color(info.label);
    by_label[s.label] = info;
  }
  if (by_label.empty())
    throw InputError(where + ": the label map has no segments (all background)");

  IODGeneralEquipmentModule::EquipmentInfo equipment(
      options.manufacturer.c_str(), options.model_name.c_str(),
      options.device_serial_number.c_str(), options.software_version.c_str());
  ContentIdentificationMacro content("1", upper_cs(options.content_label, 16).c_str(),
                                     options.content_description.c_str(),
                                     options.content_creator.c_str());
  DcmSegmentation* raw = nullptr;
  check(
      DcmSegmentation::createBinarySegmentation(raw, static_cast<Uint16>(g.size[1]),
                                                static_cast<Uint16>(g.size[0]), equipment, content),
      where);
  SegPtr seg(raw);
  {
    // Patient, study and frame of reference come from the source images.
    const OFCondition c = seg->importFromSourceImage(source.files.front().c_str());
    if (c.bad()) {
      throw InputError(where + ": cannot import patient/study from " +
                       quote_name(source.files.front()) + ": " + c.text());
    }
  }
  check(seg->getSeries().setSeriesInstanceUID(new_uid(SITE_SERIES_UID_ROOT).c_str()), where);
  check(seg->getSeries().setSeriesNumber(std::to_string(options.series_number).c_str()), where);
  check(seg->getSeries().setSeriesDescription(options.series_description.substr(0, 64).c_str()),
        where);

  // Shared functional groups: pixel measures and orientation.
  FGPixelMeasures measures;
  check(measures.setPixelSpacing((ds(g.spacing[1]) + "\\" + ds(g.spacing[0])).c_str()), where);
  check(measures.setSliceThickness(ds(g.spacing[2]).c_str()), where);
  check(measures.setSpacingBetweenSlices(ds(g.spacing[2]).c_str()), where);
  check(seg->addForAllFrames(measures), where);
  FGPlaneOrientationPatient orientation;
  const auto row = g.axis_direction(0), col = g.axis_direction(1);
  check(orientation.setImageOrientationPatient(ds(row[0]).c_str(), ds(row[1]).c_str(),
                                               ds(row[2]).c_str(), ds(col[0]).c_str(),
                                               ds(col[1]).c_str(), ds(col[2]).c_str()),
        where);
  check(seg->addForAllFrames(orientation), where);

  const std::string dim_uid = new_uid(SITE_INSTANCE_UID_ROOT);
  check(seg->getDimensions().addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid.c_str(),
                                               DCM_SegmentIdentificationSequence,
                                               "ReferencedSegmentNumber"),
        where);
  check(seg->getDimensions().addDimensionIndex(DCM_ImagePositionPatient, dim_uid.c_str(),
                                               DCM_PlanePositionSequence, "ImagePositionPatient"),
        where);

  const int64_t nx = g.size[0], ny = g.size[1], nz = g.size[2];
  std::vector<Uint8> frame(static_cast<size_t>(nx * ny));
  for (const auto& [label, info] : by_label) {
    DcmSegment* segment = nullptr;
    check(DcmSegment::create(
              segment, info.name.substr(0, 64).c_str(),
              CodeSequenceMacro(info.category.value.c_str(), info.category.scheme.c_str(),
                                info.category.meaning.c_str()),
              CodeSequenceMacro(info.type.value.c_str(), info.type.scheme.c_str(),
                                info.type.meaning.c_str()),
              algo_type(info.algorithm_type),
              info.algorithm_type == "MANUAL" ? "" : info.algorithm_name.c_str()),
          where + ": segment '" + info.name + "'");
    const auto lab = rgb_to_dicom_lab(info.color);
    segment->setRecommendedDisplayCIELabValue(lab[0], lab[1], lab[2]);
    Uint16 number = 0;
    const OFCondition added = seg->addSegment(segment, number);
    if (added.bad()) {
      delete segment;
      check(added, where);
    }
    bool any_frame = false;
    for (int64_t z = 0; z < nz; ++z) {
      const uint16_t* src = labels.data() + z * nx * ny;
      bool any = false;
      for (int64_t i = 0; i < nx * ny; ++i) {
        frame[i] = src[i] == label ? 1 : 0;
        any |= frame[i] != 0;
      }
      // Keep empty frames out, but give every segment at least one frame.
      if (!any && options.skip_empty_frames && (any_frame || z + 1 < nz)) continue;
      any_frame = true;
      const auto ipp = g.index_to_physical({0.0, 0.0, static_cast<double>(z)});
      FGPlanePosPatient position;
      check(position.setImagePositionPatient(ds(ipp[0]).c_str(), ds(ipp[1]).c_str(),
                                             ds(ipp[2]).c_str()),
            where);
      FGFrameContent frame_content;
      check(frame_content.setDimensionIndexValues(number, 0), where);
      check(frame_content.setDimensionIndexValues(static_cast<Uint32>(z + 1), 1), where);
      OFVector<ImageSOPInstanceReferenceMacro> refs(1);
      check(refs[0].setReferencedSOPClassUID(source.sop_class_uids[z].c_str()), where);
      check(refs[0].setReferencedSOPInstanceUID(source.sop_instance_uids[z].c_str()), where);
      std::unique_ptr<FGDerivationImage> derivation(
          DcmSegmentation::createDerivationImageFG(refs, ""));
      if (!derivation) throw IoError(where + ": cannot create the derivation image references");
      OFVector<FGBase*> per_frame;
      per_frame.push_back(&position);
      per_frame.push_back(&frame_content);
      per_frame.push_back(derivation.get());
      check(
          seg->addFrame(frame.data(), number, per_frame),
          where + ": frame of segment " + std::to_string(number) + ", slice " + std::to_string(z));
    }
  }

  // Referenced Series Sequence: the whole source series.
  IODReferences references;
  for (size_t z = 0; z < source.sop_instance_uids.size(); ++z) {
    references.add(
        new IODImageReference(source.info.patient_id.c_str(), source.info.study_uid.c_str(),
                              source.info.series_uid.c_str(), source.sop_instance_uids[z].c_str(),
                              source.sop_class_uids[z].c_str()));
  }
  seg->getCommonInstanceReference().addReferences(references, source.info.study_uid.c_str());

  write_via_temp_file(path, [&](const std::string& tmp) {
    const OFCondition c = seg->saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
    if (c.bad()) throw IoError(where + ": " + c.text());
  });
}

void write_dicom_seg(const std::string& path, const LabelMap& labels,
                     const std::string& source_dicom_path, const std::string& series_uid,
                     const std::vector<SegmentInfo>& segments, const DicomSegOptions& options) {
  write_dicom_seg(path, labels, load_dicom_source(source_dicom_path, series_uid), segments,
                  options);
}

// ---------------------------------------------------------------- reading

namespace {

struct SegFrame {
  uint16_t segment = 0;
  std::array<double, 3> position{0, 0, 0};
};

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

LabelMap read_seg(const std::string& path, const Geometry* reference) {
  detail::quiet_dcmtk_logging();
  const std::string where = quote_name(path);
  DcmSegmentation* raw = nullptr;
  const OFCondition loaded = DcmSegmentation::loadFile(path.c_str(), raw);
  SegPtr seg(raw);
  if (loaded.bad() || !seg)
    throw FormatError(where + ": not a readable DICOM SEG: " + loaded.text());
  const DcmSegTypes::E_SegmentationType type = seg->getSegmentationType();
  if (type != DcmSegTypes::ST_BINARY && type != DcmSegTypes::ST_FRACTIONAL) {
    throw FormatError(where + ": unsupported segmentation type");
  }
  Uint16 rows = 0, cols = 0;
  // getImagePixel() is protected in DcmSegmentation; the base class has it public.
  auto& image = static_cast<DcmIODImage<IODImagePixelModule<Uint8>>&>(*seg);
  image.getImagePixel().getRows(rows);
  image.getImagePixel().getColumns(cols);
  const size_t n_frames = seg->getNumberOfFrames();
  if (rows == 0 || cols == 0 || n_frames == 0) throw FormatError(where + ": SEG has no frames");
  FGInterface& fg = seg->getFunctionalGroups();

  // Orientation and pixel spacing (shared or per frame; taken from frame 0
  // and required to agree for the others).
  auto* orient =
      dynamic_cast<FGPlaneOrientationPatient*>(fg.get(0, DcmFGTypes::EFG_PLANEORIENTPATIENT));
  auto* measures = dynamic_cast<FGPixelMeasures*>(fg.get(0, DcmFGTypes::EFG_PIXELMEASURES));
  if (!orient || !measures)
    throw FormatError(where + ": SEG lacks plane orientation or pixel measures");
  std::array<double, 6> iop{};
  if (orient->getImageOrientationPatient(iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]).bad()) {
    throw FormatError(where + ": invalid ImageOrientationPatient");
  }
  Float64 row_spacing = 0, col_spacing = 0, between = 0, thickness = 0;
  if (measures->getPixelSpacing(row_spacing, 0).bad() ||
      measures->getPixelSpacing(col_spacing, 1).bad() || !(row_spacing > 0) || !(col_spacing > 0)) {
    throw FormatError(where + ": invalid PixelSpacing");
  }
  measures->getSpacingBetweenSlices(between);
  measures->getSliceThickness(thickness);
  const std::array<double, 3> row_dir{iop[0], iop[1], iop[2]}, col_dir{iop[3], iop[4], iop[5]};
  const std::array<double, 3> normal = cross(row_dir, col_dir);

  std::vector<SegFrame> frames(n_frames);
  for (size_t f = 0; f < n_frames; ++f) {
    const Uint32 fno = static_cast<Uint32>(f);
    auto* pos = dynamic_cast<FGPlanePosPatient*>(fg.get(fno, DcmFGTypes::EFG_PLANEPOSPATIENT));
    auto* ident = dynamic_cast<FGSegmentation*>(fg.get(fno, DcmFGTypes::EFG_SEGMENTATION));
    if (!pos || !ident)
      throw FormatError(where + ": frame " + std::to_string(f + 1) + " lacks position or segment");
    if (pos->getImagePositionPatient(frames[f].position[0], frames[f].position[1],
                                     frames[f].position[2])
            .bad()) {
      throw FormatError(where + ": frame " + std::to_string(f + 1) +
                        " has an invalid ImagePositionPatient");
    }
    Uint16 s = 0;
    if (ident->getReferencedSegmentNumber(s).bad() || s == 0) {
      throw FormatError(where + ": frame " + std::to_string(f + 1) +
                        " has no referenced segment number");
    }
    frames[f].segment = s;
    auto* o =
        dynamic_cast<FGPlaneOrientationPatient*>(fg.get(fno, DcmFGTypes::EFG_PLANEORIENTPATIENT));
    std::array<double, 6> fo{};
    if (o && o->getImageOrientationPatient(fo[0], fo[1], fo[2], fo[3], fo[4], fo[5]).good()) {
      for (int i = 0; i < 6; ++i) {
        if (std::abs(fo[i] - iop[i]) > 1e-4)
          throw FormatError(where + ": frames have different orientations");
      }
    }
  }

  Geometry g;
  if (reference) {
    g = *reference;
    for (int r = 0; r < 3; ++r) {
      if (std::abs(g.direction[r * 3 + 0] - row_dir[r]) > 1e-3 ||
          std::abs(g.direction[r * 3 + 1] - col_dir[r]) > 1e-3) {
        throw FormatError(where + ": SEG orientation does not match the reference grid");
      }
    }
    if (g.size[0] != cols || g.size[1] != rows || std::abs(g.spacing[0] - col_spacing) > 1e-3 ||
        std::abs(g.spacing[1] - row_spacing) > 1e-3) {
      throw FormatError(where + ": SEG frames (" + std::to_string(cols) + "x" +
                        std::to_string(rows) + ") do not match the reference grid (" +
                        std::to_string(g.size[0]) + "x" + std::to_string(g.size[1]) + ")");
    }
  } else {
    // Grid from the frames: slices along the normal from the lowest position.
    std::vector<double> along;
    for (const auto& f : frames) along.push_back(dot(f.position, normal));
    std::vector<double> unique = along;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end(),
                             [](double a, double b) { return std::abs(a - b) < 1e-3; }),
                 unique.end());
    double spacing = between > 0 ? between : 0.0;
    if (!(spacing > 0)) {
      double min_gap = 0;
      for (size_t i = 1; i < unique.size(); ++i) {
        const double gap = unique[i] - unique[i - 1];
        if (min_gap == 0 || gap < min_gap) min_gap = gap;
      }
      spacing = min_gap > 0 ? min_gap : (thickness > 0 ? thickness : 1.0);
    }
    const size_t lowest =
        static_cast<size_t>(std::min_element(along.begin(), along.end()) - along.begin());
    const double extent = (unique.back() - unique.front()) / spacing;
    if (extent > 100000) throw FormatError(where + ": SEG frames span an absurd number of slices");
    g.size = {cols, rows, static_cast<int64_t>(std::llround(extent)) + 1};
    g.spacing = {col_spacing, row_spacing, spacing};
    g.origin = frames[lowest].position;
    for (int r = 0; r < 3; ++r) {
      g.direction[r * 3 + 0] = row_dir[r];
      g.direction[r * 3 + 1] = col_dir[r];
      g.direction[r * 3 + 2] = normal[r];
    }
  }

  LabelMap out(g);
  const int64_t nx = g.size[0], ny = g.size[1];
  for (size_t f = 0; f < n_frames; ++f) {
    const auto idx = g.physical_to_index(frames[f].position);
    const int64_t z = std::llround(idx[2]);
    if (std::abs(idx[0]) > 1e-2 || std::abs(idx[1]) > 1e-2 || std::abs(idx[2] - z) > 1e-2 ||
        z < 0 || z >= g.size[2]) {
      throw FormatError(where + ": frame " + std::to_string(f + 1) +
                        " does not lie on a slice of the grid");
    }
    const DcmIODTypes::Frame* packed = seg->getFrame(f);
    if (!packed)
      throw FormatError(where + ": frame " + std::to_string(f + 1) + " has no pixel data");
    std::unique_ptr<DcmIODTypes::Frame> unpacked;
    const DcmIODTypes::Frame* data = packed;
    Uint8 threshold = 0;
    if (type == DcmSegTypes::ST_BINARY) {
      unpacked.reset(DcmSegUtils::unpackBinaryFrame(packed, rows, cols));
      data = unpacked.get();
    } else {
      threshold = 127;  // fractional: more than half
    }
    if (!data || data->length < static_cast<size_t>(nx * ny)) {
      throw FormatError(where + ": frame " + std::to_string(f + 1) + " is truncated");
    }
    uint16_t* dst = out.data() + z * nx * ny;
    for (int64_t i = 0; i < nx * ny; ++i) {
      if (data->pixData[i] > threshold) dst[i] = frames[f].segment;
    }
  }

  for (size_t s = 1; s <= seg->getNumberOfSegments(); ++s) {
    DcmSegment* segment = seg->getSegment(s);
    if (!segment) continue;
    SegmentInfo info;
    info.label = static_cast<uint16_t>(s);
    OFString v;
    if (segment->getSegmentLabel(v).good()) info.name = v.c_str();
    Uint16 L = 0, a = 0, b = 0;
    if (segment->getRecommendedDisplayCIELabValue(L, a, b).good())
      info.color = dicom_lab_to_rgb({L, a, b});
    OFString cv, cs, cm;
    CodeSequenceMacro& cat = segment->getSegmentedPropertyCategoryCode();
    if (cat.getCodeValue(cv).good() && cat.getCodingSchemeDesignator(cs).good() &&
        cat.getCodeMeaning(cm).good()) {
      info.category = {cv.c_str(), cs.c_str(), cm.c_str()};
    }
    CodeSequenceMacro& typ = segment->getSegmentedPropertyTypeCode();
    if (typ.getCodeValue(cv).good() && typ.getCodingSchemeDesignator(cs).good() &&
        typ.getCodeMeaning(cm).good()) {
      info.type = {cv.c_str(), cs.c_str(), cm.c_str()};
    }
    info.algorithm_type =
        DcmSegTypes::algoType2OFString(segment->getSegmentAlgorithmType()).c_str();
    if (segment->getSegmentAlgorithmName(v).good()) info.algorithm_name = v.c_str();
    out.segments.push_back(std::move(info));
  }
  return out;
}

}  // namespace

LabelMap read_dicom_seg(const std::string& path) {
  return read_seg(path, nullptr);
}

LabelMap read_dicom_seg(const std::string& path, const Geometry& reference) {
  return read_seg(path, &reference);
}

}  // namespace medicosam::io
