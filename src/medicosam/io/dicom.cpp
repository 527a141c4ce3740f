// DICOM header scanning and series layout with DCMTK (no pixel data).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "medicosam/core/error.hpp"
#include "medicosam/io/dicom_internal.hpp"

namespace medicosam::io {
namespace fs = std::filesystem;

namespace detail {

// DCMTK logs warnings about sloppy files to stderr by default; errors reach
// the user through our exceptions instead.
void quiet_dcmtk_logging() {
  static std::once_flag once;
  std::call_once(once, [] { OFLog::configure(OFLogger::FATAL_LOG_LEVEL); });
}

}  // namespace detail

namespace {

using detail::DicomFileHeader;

constexpr size_t kMaxDicomFiles = 200000;

std::string quote_name(const std::string& s) {
  return "'" + s + "'";
}

std::string get_string(DcmItem& ds, const DcmTagKey& key) {
  OFString v;
  if (ds.findAndGetOFStringArray(key, v).good()) {
    std::string s(v.c_str());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
  }
  return "";
}

bool get_doubles(DcmItem& ds, const DcmTagKey& key, double* out, unsigned long n) {
  for (unsigned long i = 0; i < n; ++i) {
    Float64 v = 0;
    if (ds.findAndGetFloat64(key, v, i).bad() || !std::isfinite(v)) return false;
    out[i] = v;
  }
  return true;
}

int64_t get_int(DcmItem& ds, const DcmTagKey& key, int64_t fallback) {
  Sint32 s = 0;
  if (ds.findAndGetSint32(key, s).good()) return s;
  Uint16 u = 0;
  if (ds.findAndGetUint16(key, u).good()) return u;
  const std::string str = get_string(ds, key);
  if (!str.empty()) {
    char* end = nullptr;
    const long v = std::strtol(str.c_str(), &end, 10);
    if (end != str.c_str()) return v;
  }
  return fallback;
}

bool has_dicm_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char buf[132];
  if (!f.read(buf, sizeof(buf))) return false;
  return std::memcmp(buf + 128, "DICM", 4) == 0;
}

bool is_candidate_file(const fs::path& p) {
  if (has_dicm_magic(p.string())) return true;
  // Old files without the preamble: only where the name suggests DICOM.
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext.empty() || ext == ".dcm" || ext == ".ima" || ext == ".dicom";
}

bool parse_header(const std::string& path, DicomFileHeader* h) {
  detail::quiet_dcmtk_logging();
  DcmFileFormat ff;
  // Stop before the pixel data; large values stay on disk.
  const OFCondition st = ff.loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, 4096,
                                             ERM_autoDetect, DCM_PixelData);
  if (st.bad()) return false;
  DcmDataset& ds = *ff.getDataset();
  DcmMetaInfo& meta = *ff.getMetaInfo();
  h->file = path;
  h->sop_class_uid = get_string(ds, DCM_SOPClassUID);
  if (h->sop_class_uid.empty()) h->sop_class_uid = get_string(meta, DCM_MediaStorageSOPClassUID);
  h->sop_instance_uid = get_string(ds, DCM_SOPInstanceUID);
  h->series_uid = get_string(ds, DCM_SeriesInstanceUID);
  if (h->sop_instance_uid.empty() || h->series_uid.empty()) return false;  // not an instance
  if (h->sop_class_uid == UID_MediaStorageDirectoryStorage) return false;  // DICOMDIR
  h->study_uid = get_string(ds, DCM_StudyInstanceUID);
  h->frame_of_reference_uid = get_string(ds, DCM_FrameOfReferenceUID);
  h->modality = get_string(ds, DCM_Modality);
  h->series_description = get_string(ds, DCM_SeriesDescription);
  h->patient_id = get_string(ds, DCM_PatientID);
  h->patient_name = get_string(ds, DCM_PatientName);
  h->photometric = get_string(ds, DCM_PhotometricInterpretation);
  h->series_number = static_cast<int>(get_int(ds, DCM_SeriesNumber, 0));
  h->instance_number = static_cast<int>(get_int(ds, DCM_InstanceNumber, 0));
  h->rows = get_int(ds, DCM_Rows, 0);
  h->columns = get_int(ds, DCM_Columns, 0);
  h->frames = std::max<int64_t>(1, get_int(ds, DCM_NumberOfFrames, 1));
  h->samples_per_pixel = static_cast<int>(get_int(ds, DCM_SamplesPerPixel, 1));
  h->bits_allocated = static_cast<int>(get_int(ds, DCM_BitsAllocated, 16));
  h->pixel_representation = static_cast<int>(get_int(ds, DCM_PixelRepresentation, 0));
  h->has_position = get_doubles(ds, DCM_ImagePositionPatient, h->position.data(), 3);
  h->has_orientation = get_doubles(ds, DCM_ImageOrientationPatient, h->orientation.data(), 6);
  h->has_spacing = get_doubles(ds, DCM_PixelSpacing, h->pixel_spacing.data(), 2);
  if (!h->has_spacing)
    h->has_spacing = get_doubles(ds, DCM_ImagerPixelSpacing, h->pixel_spacing.data(), 2);
  double v = 0;
  if (get_doubles(ds, DCM_RescaleSlope, &v, 1) && v != 0.0) h->slope = v;
  if (get_doubles(ds, DCM_RescaleIntercept, &v, 1)) h->intercept = v;
  if (get_doubles(ds, DCM_SliceThickness, &v, 1) && v > 0) h->slice_thickness = v;
  static const char* kNonImage[] = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR",
                                    "PR",  "KO",       "REG",    "RWV"};
  bool non_image = false;
  for (const char* m : kNonImage) non_image |= h->modality == m;
  h->is_image = !non_image && h->rows > 0 && h->columns > 0;
  return true;
}

}  // namespace

namespace detail {

std::vector<DicomFileHeader> scan_dicom(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(quote_name(path) + ": no such file or folder");
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
        end;
    if (ec) throw InputError(quote_name(path) + ": cannot list folder: " + ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file(ec)) continue;
      if (!is_candidate_file(it->path())) continue;
      files.push_back(it->path().string());
      if (files.size() > kMaxDicomFiles) {
        throw InputError(quote_name(path) + ": more than " + std::to_string(kMaxDicomFiles) +
                         " files; point at the series folder");
      }
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<DicomFileHeader> out;
  for (const auto& f : files) {
    DicomFileHeader h;
    if (parse_header(f, &h)) out.push_back(std::move(h));
  }
  if (out.empty()) {
    if (fs::is_directory(path, ec)) {
      throw InputError(quote_name(path) + ": folder holds no DICOM files (" +
                       std::to_string(files.size()) + " candidate files checked)");
    }
    throw FormatError(quote_name(path) + ": not a readable DICOM file");
  }
  return out;
}

namespace {

// GDCM (Debian builds keep its asserts) aborts on a file meta group with an
// invalid VR instead of reporting an error; DCMTK tolerates such files. So the
// group is checked here before GDCM sees the file.
void check_file_meta_group(const std::string& file) {
  std::ifstream f(file, std::ios::binary);
  std::string head(1 << 16, '\0');
  f.read(&head[0], static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(f.gcount()));
  if (head.size() < 132 || head.compare(128, 4, "DICM") != 0) return;  // no meta group
  static const char* kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD",
                               "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
                               "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC",
                               "UI", "UL", "UN", "UR", "US", "UT", "UV"};
  static const char* kLongVrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                   "SV", "UC", "UN", "UR", "UT", "UV"};
  auto u16 = [&](size_t o) {
    return static_cast<unsigned>(static_cast<uint8_t>(head[o])) |
           (static_cast<unsigned>(static_cast<uint8_t>(head[o + 1])) << 8);
  };
  size_t pos = 132;
  while (pos + 8 <= head.size() && u16(pos) == 0x0002) {
    const std::string vr = head.substr(pos + 4, 2);
    if (std::find_if(std::begin(kVrs), std::end(kVrs), [&](const char* v) { return vr == v; }) ==
        std::end(kVrs)) {
      throw FormatError(quote_name(file) + ": DICOM file meta information is damaged (invalid VR)");
    }
    const bool long_vr = std::find_if(std::begin(kLongVrs), std::end(kLongVrs),
                                      [&](const char* v) { return vr == v; }) != std::end(kLongVrs);
    uint64_t length = 0;
    size_t value = 0;
    if (long_vr) {
      if (pos + 12 > head.size()) break;
      length = u16(pos + 8) | (static_cast<uint64_t>(u16(pos + 10)) << 16);
      value = pos + 12;
    } else {
      length = u16(pos + 6);
      value = pos + 8;
    }
    if (length == 0xffffffffu || value + length > head.size()) {
      throw FormatError(quote_name(file) +
                        ": DICOM file meta information is damaged (bad element length)");
    }
    pos = value + static_cast<size_t>(length);
  }
}

}  // namespace

void verify_pixel_data(const DicomFileHeader& h) {
  quiet_dcmtk_logging();
  check_file_meta_group(h.file);
  DcmFileFormat ff;
  // Parses the whole structure; large values stay on disk but their lengths
  // are checked against the file.
  const OFCondition st =
      ff.loadFile(h.file.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
  if (st.bad())
    throw FormatError(quote_name(h.file) + ": DICOM file is damaged or truncated (" + st.text() +
                      ")");
  DcmElement* px = nullptr;
  if (ff.getDataset()->findAndGetElement(DCM_PixelData, px).bad() || !px) {
    throw FormatError(quote_name(h.file) + ": DICOM file has no pixel data");
  }
  const E_TransferSyntax xfer = ff.getDataset()->getOriginalXfer();
  const DcmXfer x(xfer);
  if (!x.isEncapsulated()) {
    const uint64_t bits = static_cast<uint64_t>(h.rows) * h.columns * h.frames *
                          h.samples_per_pixel * static_cast<uint64_t>(h.bits_allocated);
    if (static_cast<uint64_t>(px->getLength()) * 8 < bits) {
      throw FormatError(quote_name(h.file) + ": pixel data holds " +
                        std::to_string(px->getLength()) + " bytes, the header describes " +
                        std::to_string(bits / 8) + " (truncated file?)");
    }
  }
}

std::vector<DicomSeriesInfo> group_series(const std::vector<DicomFileHeader>& headers) {
  std::map<std::string, DicomSeriesInfo> by_uid;
  for (const auto& h : headers) {
    auto [it, inserted] = by_uid.try_emplace(h.series_uid);
    DicomSeriesInfo& s = it->second;
    if (inserted) {
      s.series_uid = h.series_uid;
      s.series_number = h.series_number;
      s.description = h.series_description;
      s.modality = h.modality;
      s.sop_class_uid = h.sop_class_uid;
      s.study_uid = h.study_uid;
      s.frame_of_reference_uid = h.frame_of_reference_uid;
      s.patient_id = h.patient_id;
      s.patient_name = h.patient_name;
      s.rows = h.rows;
      s.columns = h.columns;
      s.frames_per_file = h.frames;
    }
    ++s.num_files;
    s.files.push_back(h.file);
  }
  std::vector<DicomSeriesInfo> out;
  for (auto& [uid, s] : by_uid) out.push_back(std::move(s));
  std::stable_sort(out.begin(), out.end(), [](const DicomSeriesInfo& a, const DicomSeriesInfo& b) {
    return a.series_number < b.series_number;
  });
  return out;
}

namespace {

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
std::array<double, 3> normalized(std::array<double, 3> v) {
  const double n = std::sqrt(dot(v, v));
  if (n > 0) {
    for (double& x : v) x /= n;
  }
  return v;
}

std::string series_list(const std::vector<DicomSeriesInfo>& series) {
  std::string out;
  for (const auto& s : series) out += "\n  " + s.summary();
  return out;
}

// Pixel type after rescale: the stored type if the rescale is the identity,
// an integer type wide enough for integer slope/intercept, else float32.
PixelType rescaled_type(const std::vector<DicomFileHeader>& slices) {
  const auto& h0 = slices.front();
  const bool is_signed = h0.pixel_representation == 1;
  PixelType stored;
  double lo = 0, hi = 0;
  if (h0.bits_allocated <= 8) {
    stored = is_signed ? PixelType::kInt8 : PixelType::kUInt8;
    lo = is_signed ? -128 : 0;
    hi = is_signed ? 127 : 255;
  } else if (h0.bits_allocated <= 16) {
    stored = is_signed ? PixelType::kInt16 : PixelType::kUInt16;
    lo = is_signed ? -32768 : 0;
    hi = is_signed ? 32767 : 65535;
  } else {
    stored = is_signed ? PixelType::kInt32 : PixelType::kUInt32;
    lo = is_signed ? -2147483648.0 : 0;
    hi = is_signed ? 2147483647.0 : 4294967295.0;
  }
  bool identity = true, integral = true;
  double out_lo = 0, out_hi = 0;
  bool first = true;
  for (const auto& s : slices) {
    identity &= s.slope == 1.0 && s.intercept == 0.0;
    integral &= s.slope == std::floor(s.slope) && s.intercept == std::floor(s.intercept);
    const double a = lo * s.slope + s.intercept, b = hi * s.slope + s.intercept;
    const double mn = std::min(a, b), mx = std::max(a, b);
    out_lo = first ? mn : std::min(out_lo, mn);
    out_hi = first ? mx : std::max(out_hi, mx);
    first = false;
  }
  if (identity) return stored;
  if (!integral) return PixelType::kFloat32;
  if (out_lo >= -32768 && out_hi <= 32767) return PixelType::kInt16;
  if (out_lo >= 0 && out_hi <= 65535) return PixelType::kUInt16;
  if (out_lo >= -2147483648.0 && out_hi <= 2147483647.0) return PixelType::kInt32;
  return PixelType::kFloat64;
}

}  // namespace

DicomSeriesLayout layout_series(const std::vector<DicomFileHeader>& headers,
                                const std::string& series_uid, const std::string& path) {
  const std::vector<DicomSeriesInfo> series = group_series(headers);
  const DicomSeriesInfo* chosen = nullptr;
  if (!series_uid.empty()) {
    for (const auto& s : series) {
      if (s.series_uid == series_uid) chosen = &s;
    }
    if (!chosen) {
      throw InputError(quote_name(path) + ": no DICOM series with UID " + series_uid +
                       "; found:" + series_list(series));
    }
  } else {
    std::vector<const DicomSeriesInfo*> images;
    for (const auto& s : series) {
      const bool image = std::any_of(headers.begin(), headers.end(), [&](const DicomFileHeader& h) {
        return h.series_uid == s.series_uid && h.is_image;
      });
      if (image) images.push_back(&s);
    }
    if (images.size() == 1) {
      chosen = images.front();
    } else if (images.empty()) {
      throw InputError(quote_name(path) +
                       ": holds no DICOM image series; found:" + series_list(series));
    } else {
      throw InputError(quote_name(path) + ": holds " + std::to_string(images.size()) +
                       " DICOM image series; choose one by SeriesInstanceUID (--series UID):" +
                       series_list(series));
    }
  }
  DicomSeriesLayout layout;
  layout.info = *chosen;
  for (const auto& h : headers) {
    if (h.series_uid == chosen->series_uid) layout.slices.push_back(h);
  }
  auto& slices = layout.slices;
  const auto& h0 = slices.front();
  const std::string where = quote_name(path) + " (series " + chosen->series_uid + ")";
  if (h0.modality == "SEG") {
    throw InputError(where + ": is a DICOM SEG (a label map); read it with read_label_map");
  }
  if (!h0.is_image)
    throw InputError(where + ": is not an image series (modality " + h0.modality + ")");
  for (const auto& s : slices) {
    if (s.frames > 1) {
      throw FormatError(where + ": multi-frame DICOM (" + std::to_string(s.frames) + " frames in " +
                        quote_name(s.file) +
                        ") is not supported; convert it to single-frame files first");
    }
    if (s.rows != h0.rows || s.columns != h0.columns) {
      throw FormatError(where + ": slices differ in size (" + std::to_string(h0.columns) + "x" +
                        std::to_string(h0.rows) + " vs " + std::to_string(s.columns) + "x" +
                        std::to_string(s.rows) + " in " + quote_name(s.file) + ")");
    }
    if (s.samples_per_pixel != h0.samples_per_pixel || s.bits_allocated != h0.bits_allocated ||
        s.pixel_representation != h0.pixel_representation) {
      throw FormatError(where + ": slices differ in pixel format (" + quote_name(s.file) + ")");
    }
  }
  if (h0.samples_per_pixel != 1 && h0.samples_per_pixel != 3) {
    throw FormatError(where + ": SamplesPerPixel " + std::to_string(h0.samples_per_pixel) +
                      " is not supported");
  }
  if (h0.bits_allocated != 8 && h0.bits_allocated != 16 && h0.bits_allocated != 32) {
    throw FormatError(where + ": BitsAllocated " + std::to_string(h0.bits_allocated) +
                      " is not supported");
  }
  layout.components = h0.samples_per_pixel;

  Geometry& g = layout.geometry;
  g.size = {h0.columns, h0.rows, static_cast<int64_t>(slices.size())};
  std::array<double, 3> row_dir{1, 0, 0}, col_dir{0, 1, 0};
  if (h0.has_orientation) {
    row_dir = normalized({h0.orientation[0], h0.orientation[1], h0.orientation[2]});
    col_dir = normalized({h0.orientation[3], h0.orientation[4], h0.orientation[5]});
    if (std::abs(dot(row_dir, col_dir)) > 1e-3 || dot(row_dir, row_dir) < 0.5 ||
        dot(col_dir, col_dir) < 0.5) {
      throw FormatError(where + ": ImageOrientationPatient is not two orthogonal unit vectors");
    }
  }
  const std::array<double, 3> normal = normalized(cross(row_dir, col_dir));
  for (const auto& s : slices) {
    if (s.has_orientation != h0.has_orientation) {
      throw FormatError(where + ": some slices lack ImageOrientationPatient");
    }
    for (int i = 0; i < 6 && h0.has_orientation; ++i) {
      if (std::abs(s.orientation[i] - h0.orientation[i]) > 1e-4) {
        throw FormatError(where + ": slices have different orientations (" + quote_name(s.file) +
                          "), e.g. a localizer mixed in; pick the files of one stack");
      }
    }
  }
  // x grows along the row direction (column index) with the column spacing.
  g.spacing = {h0.has_spacing ? h0.pixel_spacing[1] : 1.0,
               h0.has_spacing ? h0.pixel_spacing[0] : 1.0, 1.0};
  if (!(g.spacing[0] > 0) || !(g.spacing[1] > 0)) {
    throw FormatError(where + ": PixelSpacing must be positive");
  }
  for (int r = 0; r < 3; ++r) {
    g.direction[r * 3 + 0] = row_dir[r];
    g.direction[r * 3 + 1] = col_dir[r];
    g.direction[r * 3 + 2] = normal[r];
  }
  if (slices.size() == 1) {
    g.origin = slices[0].has_position ? slices[0].position : std::array<double, 3>{0, 0, 0};
    // One slice: its thickness is the best voxel depth there is.
    if (slices[0].slice_thickness > 0) g.spacing[2] = slices[0].slice_thickness;
  } else {
    for (const auto& s : slices) {
      if (!s.has_position) {
        throw FormatError(where + ": cannot order slices, " + quote_name(s.file) +
                          " has no ImagePositionPatient");
      }
    }
    // Order by position along the normal, never by file name or InstanceNumber.
    std::stable_sort(slices.begin(), slices.end(),
                     [&](const DicomFileHeader& a, const DicomFileHeader& b) {
                       return dot(a.position, normal) < dot(b.position, normal);
                     });
    std::vector<double> gaps;
    for (size_t i = 1; i < slices.size(); ++i) {
      const double gap = dot(slices[i].position, normal) - dot(slices[i - 1].position, normal);
      if (gap < 1e-4) {
        throw FormatError(where + ": two slices share a position (" +
                          quote_name(slices[i - 1].file) + ", " + quote_name(slices[i].file) +
                          "): several acquisitions/echoes in one series?");
      }
      gaps.push_back(gap);
    }
    const double first = dot(slices.front().position, normal);
    const double last = dot(slices.back().position, normal);
    const double spacing = (last - first) / static_cast<double>(slices.size() - 1);
    for (size_t i = 0; i < gaps.size(); ++i) {
      if (std::abs(gaps[i] - spacing) > std::max(0.05 * spacing, 1e-3)) {
        throw FormatError(where + ": slice spacing is not uniform (" + std::to_string(gaps[i]) +
                          " mm between " + quote_name(slices[i].file) + " and " +
                          quote_name(slices[i + 1].file) + ", " + std::to_string(spacing) +
                          " mm on average): missing slices?");
      }
    }
    // Positions must move along the normal (no gantry tilt / shear).
    for (size_t i = 1; i < slices.size(); ++i) {
      std::array<double, 3> d;
      for (int r = 0; r < 3; ++r) d[r] = slices[i].position[r] - slices[0].position[r];
      const double along = dot(d, normal);
      for (int r = 0; r < 3; ++r) d[r] -= along * normal[r];
      if (std::sqrt(dot(d, d)) > 0.01 * std::abs(along) + 1e-3) {
        throw FormatError(where +
                          ": slice positions are not along the slice normal (gantry tilt?); "
                          "resample the series first");
      }
    }
    g.spacing[2] = spacing;
    g.origin = slices.front().position;
  }
  layout.pixel_type = h0.samples_per_pixel == 3 ? PixelType::kUInt8 : rescaled_type(slices);
  return layout;
}

}  // namespace detail

std::string DicomSeriesInfo::summary() const {
  std::ostringstream s;
  s << series_uid << " (#" << series_number << ") " << (modality.empty() ? "?" : modality);
  if (!description.empty()) s << " '" << description << "'";
  if (rows > 0) s << " " << columns << "x" << rows;
  s << ", " << num_files << (num_files == 1 ? " file" : " files");
  if (frames_per_file > 1) s << " (" << frames_per_file << " frames each)";
  return s.str();
}

std::vector<DicomSeriesInfo> list_dicom_series(const std::string& path) {
  return detail::group_series(detail::scan_dicom(path));
}

DicomSourceSeries load_dicom_source(const std::string& path, const std::string& series_uid) {
  const auto headers = detail::scan_dicom(path);
  const auto layout = detail::layout_series(headers, series_uid, path);
  DicomSourceSeries out;
  out.info = layout.info;
  out.geometry = layout.geometry;
  for (const auto& s : layout.slices) {
    out.files.push_back(s.file);
    out.sop_instance_uids.push_back(s.sop_instance_uid);
    out.sop_class_uids.push_back(s.sop_class_uid);
  }
  return out;
}

bool looks_like_dicom(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return true;
  return has_dicm_magic(path);
}

}  // namespace medicosam::io
