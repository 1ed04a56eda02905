// SPDX-License-Identifier: MIT
#include "args.h"

#include <cmath>

namespace heimdall {

namespace {

// One napi call past the type check: the AF_XDP rings take a Uint32Array once per batch.
template <typename T>
ArraySpan<T> TypedArray(const Napi::CallbackInfo &info, size_t i, napi_typedarray_type want, const char *type_name, const char *what) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  napi_typedarray_type type;
  size_t len = 0;
  void *data = nullptr;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &type, &len, &data, nullptr, nullptr) != napi_ok || type != want)
    throw Napi::TypeError::New(env, std::string(what) + " must be a " + type_name);
  return {static_cast<T *>(data), len};
}

}  // namespace

uint32_t ValueUint32(Napi::Env env, const Napi::Value &v, const char *what, uint32_t min, uint32_t max) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  // Written so that NaN fails too.
  if (!(d >= min && d <= max) || std::floor(d) != d)
    throw Napi::RangeError::New(env, std::string(what) + " must be an integer " + std::to_string(min) + ".." + std::to_string(max) + ", got " +
                                         v.ToString().Utf8Value());
  return static_cast<uint32_t>(d);
}

std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *what) {
  Napi::Value v = info[i];
  if (!v.IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object ArgObject(const Napi::CallbackInfo &info, size_t i, const char *what) {
  Napi::Value v = info[i];
  if (!v.IsObject()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

uint32_t ArgUint32(const Napi::CallbackInfo &info, size_t i, const char *what, uint32_t min, uint32_t max) {
  return ValueUint32(info.Env(), info[i], what, min, max);
}

ArraySpan<uint32_t> ArgUint32Array(const Napi::CallbackInfo &info, size_t i, const char *what) {
  return TypedArray<uint32_t>(info, i, napi_uint32_array, "Uint32Array", what);
}

ArraySpan<double> ArgFloat64Array(const Napi::CallbackInfo &info, size_t i, const char *what) {
  return TypedArray<double>(info, i, napi_float64_array, "Float64Array", what);
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *what) {
  Napi::Value v = info[i];
  if (!v.IsBuffer()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *what, size_t size) {
  Napi::Buffer<uint8_t> b = ArgBuffer(info, i, what);
  if (b.Length() != size)
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be " + std::to_string(size) + " bytes, got " + std::to_string(b.Length()));
  return b;
}

uint32_t PropUint32(const Napi::Object &obj, const char *key, uint32_t min, uint32_t max) {
  return ValueUint32(obj.Env(), obj.Get(key), (std::string("options.") + key).c_str(), min, max);
}

Napi::Array PropArray(const Napi::Object &obj, const char *key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(obj.Env(), std::string("options.") + key + " must be an array");
  return v.As<Napi::Array>();
}

}  // namespace heimdall
