// pth.h — PyTorch checkpoints (.pth / .ckpt, the zip format torch.save
// writes since 1.6) read without executing anything.
//
// The archive, in order of use:
//   ARCHIVE/data.pkl        a pickle (protocol 2–5) of a state dict:
//                           {name: torch._utils._rebuild_tensor_v2(storage,
//                            offset, shape, stride, requires_grad, hooks)}
//                           where storage is a persistent id
//                           ('storage', torch.HalfStorage, KEY, 'cpu', numel)
//   ARCHIVE/data/KEY        the raw little-endian bytes of each storage
//   ARCHIVE/byteorder       "little" (when present)
//
// Pickles are programs: Python's unpickler imports and calls whatever the
// file names (a hostile checkpoint can call os.system). This one is a
// small stack machine that knows only the data opcodes (ints, floats,
// strings, tuples, lists, dicts, memo), and accepts GLOBAL only for
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter and torch.*Storage types; REDUCE applies only those.
// Any other opcode or global refuses the file with a message naming it and
// its offset. Nothing is ever executed or imported.
//
// Nested dicts are flattened with '.' (a .ckpt's {"state_dict": {...}}
// gives "state_dict.model..."); non-tensor values are ignored. Tensors must
// be contiguous. The result is an st_file (safetensors.h), so models load
// from .pth exactly as from .safetensors.
//
//     st_file *f;
//     if (pth_open(&f, "taef2_decoder.pth", &err) != SIM_OK) ...
//     st_read_f32(f, "1.weight", shape, 4, out, &err);
//     st_close(f);
#ifndef SIM_PTH_H
#define SIM_PTH_H

#include "image/safetensors.h"

#define PTH_MAX_PICKLE (64u << 20)   // bytes of data.pkl accepted
#define PTH_MAX_DATA (16ull << 30)   // bytes of storages accepted

sim_status pth_open(st_file **out, const char *path, sim_err *err);
// The same over a zip in memory (data must outlive the call only).
sim_status pth_open_memory(st_file **out, const uint8_t *data, size_t size, const char *name, sim_err *err);

// Runs just the unpickler over a pickle: SIM_OK when it is an allowed state
// dict, with *n_tensors tensors (for tests and fuzzing).
sim_status pth_check_pickle(const uint8_t *pkl, size_t n, int *n_tensors, sim_err *err);

#endif
