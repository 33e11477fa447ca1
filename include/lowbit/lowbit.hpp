/// \file
/// \brief The umbrella header: everything in lowbit's public CPU API.
#pragma once

#include "arch/dispatch.hpp"
#include "arch/isa.hpp"
#include "core/aligned.hpp"
#include "core/bits.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/half.hpp"
#include "core/parallel.hpp"
#include "formats/all.hpp"
#include "kernels/dequantize.hpp"
#include "kernels/reference/dequantize.hpp"
#include "layout/panel.hpp"
#include "layout/quantized_matrix.hpp"
#include "quant/double_quant.hpp"
#include "quant/mx.hpp"
#include "quant/quantize.hpp"
#include "quant/rtn.hpp"
#include "scheme.hpp"
