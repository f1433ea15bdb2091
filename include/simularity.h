// simularity.h — the public C API of Simularity.
//
// Simularity runs AI-driven visual novels: it loads GGUF language models and
// runs them on the CPU. This header is what an embedding program sees. It is
// deliberately small and grows layer by layer: today it carries the status
// codes every module returns and the engine version; models, sessions and
// samplers join it with the runtime.
//
// Errors: every fallible call returns a sim_status (SIM_OK = 0, errors are
// negative) and, where it takes a `char *errbuf`, writes a one-line message
// naming the input and the problem.
#ifndef SIMULARITY_H
#define SIMULARITY_H

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_VERSION_MAJOR 0
#define SIM_VERSION_MINOR 1
#define SIM_VERSION_PATCH 0
#define SIM_VERSION_STRING "0.1.0"

typedef enum sim_status {
    SIM_OK = 0,
    SIM_ERR_IO = -1,          // a file could not be opened, read, mapped or written
    SIM_ERR_FORMAT = -2,      // the input is malformed (truncated, corrupt, wrong magic)
    SIM_ERR_UNSUPPORTED = -3, // well-formed, but uses something we do not implement
    SIM_ERR_NOMEM = -4,       // an allocation failed
    SIM_ERR_ARG = -5,         // the caller passed an invalid argument
    SIM_ERR_RANGE = -6,       // a value is outside what the model or context allows
    SIM_ERR_ABORTED = -7,     // the caller asked to stop
} sim_status;

// A short constant name for a status ("io error", "format error", ...).
const char *sim_status_str(sim_status s);

#ifdef __cplusplus
}
#endif
#endif
