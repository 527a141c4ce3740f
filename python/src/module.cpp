// medicosam._core: the native part of the `medicosam` Python package.
#include "common.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/runtime_env.hpp"

namespace medicosam::python {
namespace {

// Exception classes: medicosam.Error (a RuntimeError) and its subclasses, which
// also derive from the builtin a Python user would catch (ValueError for bad
// input, OSError for failed writes). Messages are the CLI's.
PyObject* g_error = nullptr;
PyObject* g_input_error = nullptr;
PyObject* g_format_error = nullptr;
PyObject* g_checkpoint_error = nullptr;
PyObject* g_io_error = nullptr;

PyObject* new_exception(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  const std::string full = std::string("medicosam.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(full.c_str(), doc, bases.ptr(), nullptr);
  if (!cls) throw py::error_already_set();
  m.add_object(name, py::handle(cls));
  return cls;
}

}  // namespace
}  // namespace medicosam::python

PYBIND11_MODULE(_core, m) {
  using namespace medicosam::python;
  namespace ms = medicosam;
  m.doc() = "Native part of medicosam (SAM-family segmentation on libtorch); import `medicosam` instead.";

  auto builtins = py::module_::import("builtins");
  g_error = new_exception(m, "Error", py::make_tuple(builtins.attr("RuntimeError")),
                          "Base of every error medicosam raises on purpose.");
  g_input_error = new_exception(m, "InputError", py::make_tuple(py::handle(g_error), builtins.attr("ValueError")),
                                "Unusable input: a bad file, argument, array or prompt.");
  g_format_error = new_exception(m, "FormatError", py::make_tuple(py::handle(g_input_error)),
                                 "A file exists but its content is malformed, truncated or unsafe.");
  g_checkpoint_error = new_exception(m, "CheckpointError", py::make_tuple(py::handle(g_input_error)),
                                     "A checkpoint does not fit the model.");
  g_io_error = new_exception(m, "IoError", py::make_tuple(py::handle(g_error), builtins.attr("OSError")),
                             "Writing an output failed.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ms::CheckpointError& e) {
      PyErr_SetString(g_checkpoint_error, e.what());
    } catch (const ms::FormatError& e) {
      PyErr_SetString(g_format_error, e.what());
    } catch (const ms::InputError& e) {
      PyErr_SetString(g_input_error, e.what());
    } catch (const ms::IoError& e) {
      PyErr_SetString(g_io_error, e.what());
    } catch (const ms::Error& e) {
      PyErr_SetString(g_error, e.what());
    }
  });

  m.def(
      "openblas_core", []() { return std::string(ms::openblas_core_name()); },
      "The OpenBLAS kernel family in use ('SkylakeX', 'Haswell', 'Prescott', ...), '' if not OpenBLAS.");

  bind_predictor(m);
  bind_amg(m);
  bind_volume(m);
  bind_session(m);
}
