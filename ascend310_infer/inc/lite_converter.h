/**
 * The C++ class `mindspore::Converter` of MindSpore Lite 2.0's converter library
 * (lib/libmindspore_converter.so). The Lite wheel ships the library but not its header, so the class
 * is declared here as the public Lite 2.0 API documents it: the members this project calls, and one
 * std::shared_ptr as its only data member (the library owns what it points to). The symbols were
 * checked with `nm -DC lib/libmindspore_converter.so`; linking fails loudly if they ever differ.
 */
#ifndef DLRM_ASCEND310_INFER_INC_LITE_CONVERTER_H_
#define DLRM_ASCEND310_INFER_INC_LITE_CONVERTER_H_

#include <memory>
#include <string>
#include <vector>

#include "include/api/status.h"
#include "include/api/types.h"

namespace mindspore {
namespace converter {
// The source framework of a model (include/registry/converter_context.h of the Lite package).
enum FmkType : int { kFmkTypeTf = 0, kFmkTypeCaffe = 1, kFmkTypeOnnx = 2, kFmkTypeMs = 3, kFmkTypeTflite = 4 };
}  // namespace converter

class Converter {
 public:
  // model_file: the source model; output_file: prefix of the output (".mindir" is appended);
  // weight_file: only for frameworks that keep weights apart (Caffe), else empty.
  Converter(converter::FmkType fmk_type, const std::vector<char> &model_file, const std::vector<char> &output_file,
            const std::vector<char> &weight_file);
  void SetSaveType(ModelType save_type);      // kMindIR: the model file Lite's runtime builds from
  void SetWeightFp16(bool weight_fp16);       // store float32 weights as float16
  void SetDevice(const std::vector<char> &device);  // "Ascend" targets the device (not run here)
  Status Convert();

 private:
  std::shared_ptr<void> data_;
};
}  // namespace mindspore

#endif  // DLRM_ASCEND310_INFER_INC_LITE_CONVERTER_H_
