// PNG and JPEG decoding with libpng / libjpeg directly. ITK's PNG and JPEG
// readers abort the process on some corrupt files (libpng errors outside a
// setjmp, libjpeg error exits), so these two formats are decoded here with
// the libraries' error hooks turned into exceptions.
//
// setjmp/longjmp rules: each function that calls setjmp holds only trivially
// destructible locals, and C++ objects are created before or after, never
// between setjmp and a possible longjmp.
#include "medicosam/io/raster.hpp"

#include <jpeglib.h>
// After jpeglib.h: defines the message codes (JWRN_JPEG_EOF).
#include <jerror.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "medicosam/core/error.hpp"

namespace medicosam::io::detail {
namespace {

std::string quote_name(const std::string& s) {
  return "'" + s + "'";
}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};

std::unique_ptr<std::FILE, FileCloser> open_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) throw InputError(quote_name(path) + ": cannot open for reading: " + std::strerror(errno));
  return f;
}

void check_limit(const std::string& path, uint64_t width, uint64_t height, uint64_t channels,
                 uint64_t bytes_per_sample, uint64_t max_bytes) {
  const uint64_t bytes = width * height * channels * bytes_per_sample;  // each factor < 2^31
  if (width == 0 || height == 0) throw FormatError(quote_name(path) + ": image has no pixels");
  if (bytes > max_bytes) {
    throw FormatError(quote_name(path) + ": image of " + std::to_string(width) + "x" +
                      std::to_string(height) + " pixels needs " + std::to_string(bytes) +
                      " bytes, more than the limit of " + std::to_string(max_bytes) +
                      "; refusing to allocate");
  }
}

Volume make_2d(PixelType type, int64_t width, int64_t height, int components, const char* format) {
  Geometry g;
  g.size = {width, height, 1};
  Volume v(type, g, components);
  v.format = format;
  return v;
}

// ---------------------------------------------------------------- PNG

struct PngContext {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::jmp_buf jmp;
  char message[200] = {0};
  ~PngContext() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

void png_error_to_jump(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof(ctx->message), "%s", msg ? msg : "libpng error");
  std::longjmp(ctx->jmp, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

struct PngLayout {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 8;
  int channels = 1;  // after transforms
  size_t row_bytes = 0;
};

// Reads the header and sets up transforms (palette/low bit depth -> 8 bit,
// alpha stripped, 16-bit to host order). Returns false on a libpng error.
bool png_read_layout(PngContext* ctx, std::FILE* f, PngLayout* out) {
  if (setjmp(ctx->jmp)) return false;
  png_init_io(ctx->png, f);
  png_set_sig_bytes(ctx->png, 8);
  // The user limits libpng applies while parsing (absurd dimensions, huge
  // ancillary chunks) stay at their defaults; our own limit follows.
  png_read_info(ctx->png, ctx->info);
  png_set_expand(ctx->png);
  png_set_strip_alpha(ctx->png);
  if (png_get_bit_depth(ctx->png, ctx->info) == 16) png_set_swap(ctx->png);
  png_set_interlace_handling(ctx->png);
  png_read_update_info(ctx->png, ctx->info);
  out->width = png_get_image_width(ctx->png, ctx->info);
  out->height = png_get_image_height(ctx->png, ctx->info);
  out->bit_depth = png_get_bit_depth(ctx->png, ctx->info);
  out->channels = png_get_channels(ctx->png, ctx->info);
  out->row_bytes = png_get_rowbytes(ctx->png, ctx->info);
  return true;
}

bool png_read_pixels(PngContext* ctx, png_bytepp rows) {
  if (setjmp(ctx->jmp)) return false;
  png_read_image(ctx->png, rows);
  png_read_end(ctx->png, nullptr);
  return true;
}

// ---------------------------------------------------------------- JPEG

struct JpegContext {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr err;
  std::jmp_buf jmp;
  char message[JMSG_LENGTH_MAX] = {0};
  bool truncated = false;
  bool created = false;
  ~JpegContext() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

void jpeg_error_to_jump(j_common_ptr cinfo) {
  auto* ctx = static_cast<JpegContext*>(cinfo->client_data);
  (*cinfo->err->format_message)(cinfo, ctx->message);
  std::longjmp(ctx->jmp, 1);
}

void jpeg_note_message(j_common_ptr cinfo, int level) {
  // Warnings (level -1): a premature end of data means a truncated file,
  // which PIL refuses too; other recoverable corruption is tolerated as PIL does.
  auto* ctx = static_cast<JpegContext*>(cinfo->client_data);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ctx->truncated = true;
}

bool jpeg_read_layout(JpegContext* ctx, std::FILE* f) {
  if (setjmp(ctx->jmp)) return false;
  jpeg_create_decompress(&ctx->cinfo);
  ctx->created = true;
  ctx->cinfo.client_data = ctx;
  jpeg_stdio_src(&ctx->cinfo, f);
  jpeg_read_header(&ctx->cinfo, TRUE);
  if (ctx->cinfo.jpeg_color_space == JCS_CMYK || ctx->cinfo.jpeg_color_space == JCS_YCCK)
    return true;
  ctx->cinfo.out_color_space = ctx->cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_calc_output_dimensions(&ctx->cinfo);
  return true;
}

bool jpeg_read_pixels(JpegContext* ctx, uint8_t* out, size_t row_bytes) {
  if (setjmp(ctx->jmp)) return false;
  jpeg_start_decompress(&ctx->cinfo);
  while (ctx->cinfo.output_scanline < ctx->cinfo.output_height) {
    JSAMPROW row = out + static_cast<size_t>(ctx->cinfo.output_scanline) * row_bytes;
    if (jpeg_read_scanlines(&ctx->cinfo, &row, 1) != 1) break;
  }
  jpeg_finish_decompress(&ctx->cinfo);
  return true;
}

}  // namespace

Volume read_png(const std::string& path, uint64_t max_bytes) {
  auto f = open_file(path);
  png_byte sig[8];
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
    throw FormatError(quote_name(path) + ": not a PNG file");
  }
  auto ctx = std::make_unique<PngContext>();
  ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx.get(), png_error_to_jump,
                                    png_ignore_warning);
  if (!ctx->png) throw FormatError(quote_name(path) + ": cannot initialise libpng");
  ctx->info = png_create_info_struct(ctx->png);
  if (!ctx->info) throw FormatError(quote_name(path) + ": cannot initialise libpng");
  PngLayout layout;
  if (!png_read_layout(ctx.get(), f.get(), &layout)) {
    throw FormatError(quote_name(path) + ": damaged PNG: " + ctx->message);
  }
  if (layout.channels != 1 && layout.channels != 3) {
    throw FormatError(quote_name(path) + ": PNG with " + std::to_string(layout.channels) +
                      " channels");
  }
  const int sample_bytes = layout.bit_depth == 16 ? 2 : 1;
  check_limit(path, layout.width, layout.height, layout.channels, sample_bytes, max_bytes);
  if (layout.row_bytes != static_cast<size_t>(layout.width) * layout.channels * sample_bytes) {
    throw FormatError(quote_name(path) + ": unexpected PNG row layout");
  }
  Volume v = make_2d(sample_bytes == 2 ? PixelType::kUInt16 : PixelType::kUInt8, layout.width,
                     layout.height, layout.channels, "PNG");
  std::vector<png_bytep> rows(layout.height);
  auto* base = static_cast<uint8_t*>(v.data());
  for (png_uint_32 y = 0; y < layout.height; ++y) rows[y] = base + y * layout.row_bytes;
  if (!png_read_pixels(ctx.get(), rows.data())) {
    throw FormatError(quote_name(path) + ": damaged or truncated PNG: " + ctx->message);
  }
  return v;
}

Volume read_jpeg(const std::string& path, uint64_t max_bytes) {
  auto f = open_file(path);
  auto ctx = std::make_unique<JpegContext>();
  ctx->cinfo.err = jpeg_std_error(&ctx->err);
  ctx->err.error_exit = jpeg_error_to_jump;
  ctx->err.emit_message = jpeg_note_message;
  if (!jpeg_read_layout(ctx.get(), f.get())) {
    throw FormatError(quote_name(path) + ": damaged JPEG: " + ctx->message);
  }
  if (ctx->cinfo.jpeg_color_space == JCS_CMYK || ctx->cinfo.jpeg_color_space == JCS_YCCK) {
    throw FormatError(quote_name(path) + ": CMYK JPEG is not supported; convert it to RGB");
  }
  const int channels = ctx->cinfo.output_components;
  if (channels != 1 && channels != 3) {
    throw FormatError(quote_name(path) + ": JPEG with " + std::to_string(channels) + " channels");
  }
  check_limit(path, ctx->cinfo.output_width, ctx->cinfo.output_height, channels, 1, max_bytes);
  Volume v = make_2d(PixelType::kUInt8, ctx->cinfo.output_width, ctx->cinfo.output_height, channels,
                     "JPEG");
  const size_t row_bytes = static_cast<size_t>(ctx->cinfo.output_width) * channels;
  if (!jpeg_read_pixels(ctx.get(), static_cast<uint8_t*>(v.data()), row_bytes)) {
    throw FormatError(quote_name(path) + ": damaged JPEG: " + ctx->message);
  }
  if (ctx->truncated)
    throw FormatError(quote_name(path) + ": JPEG is truncated (premature end of data)");
  return v;
}

}  // namespace medicosam::io::detail
