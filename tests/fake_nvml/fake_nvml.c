/*
 * A fake libnvidia-ml.so.1 for tests: the NVML entry points the sidecar reaches through the
 * real pynvml, compiled against NVIDIA's own nvml.h (PyPI nvidia-nvml-dev) so every struct
 * layout, enum and return code is the header's. Answers come from a trace converted by
 * build.py (FAKE_NVML_TRACE=PATH, read at nvmlInit): the latest sample whose time is not after
 * the time since nvmlInit answers, as in kickstart_gpu/replay.py.
 *
 * Driver realities it plays: per-device NOT_SUPPORTED functions, errors (GPU_IS_LOST...) that
 * hold from the sample naming them on, nvmlInit or nvmlDeviceGetCount failing, one clock or PCIe
 * counter NOT_SUPPORTED in some readings only, MIG instances, nvmlDeviceGetPcieThroughput
 * taking 20 ms as the real one does by design, and, built with -DFAKE_NVML_OLD_DRIVER, a driver
 * older than 510/535 without the _v3 process lists and nvmlDeviceGetCurrentClocksEventReasons.
 *
 * Test code: never shipped.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_DEVICES 64
#define MAX_MIG 8
#define MAX_LISTED 64 /* processes per list per device per sample */
/* a clock or PCIe counter this one reading lacks (the trace's null): NOT_SUPPORTED */
#define NOT_READ 4294967295u

struct process { unsigned int pid; unsigned long long memory; };
struct utilization { unsigned int pid, sm, mem, enc, dec; };
struct failure { int device; char function[96]; nvmlReturn_t code; };

struct reading {
    unsigned int temp, power, memory_util, gpu_util, clocks[4], pcie_rx, pcie_tx;
    unsigned long long energy, memory_used, bar1_used, throttle;
    int n_compute, n_graphics, n_util;
    struct process compute[MAX_LISTED], graphics[MAX_LISTED];
    struct utilization util[MAX_LISTED];
};

struct sample {
    double t;
    struct reading devices[MAX_DEVICES];
    int n_failures;
    struct failure *failures;
};

struct nvmlDevice_st {
    int index;
    struct nvmlDevice_st *parent; /* set on a MIG instance */
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE], name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
    char pci_bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
    int compute_mode, cc_major, cc_minor;
    unsigned int power_limit, max_clocks[4];
    unsigned long long memory_total, bar1_total;
    char unsupported[1024]; /* " fn1 fn2 " */
};

static struct {
    int initialized;
    struct timespec started, started_wall;
    char driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
    int cuda, has_cuda;
    nvmlReturn_t init_error, count_error;
    int pcie_ms;
    int n_devices;
    struct nvmlDevice_st devices[MAX_DEVICES];
    int n_mig[MAX_DEVICES];
    struct nvmlDevice_st mig[MAX_DEVICES][MAX_MIG];
    int n_samples;
    struct sample *samples;
} fake;

/* -- the trace ---------------------------------------------------------------------------- */

static void forget_trace(void) {
    for (int i = 0; i < fake.n_samples; i++) free(fake.samples[i].failures);
    free(fake.samples);
    memset(&fake, 0, sizeof fake);
}

static struct reading *current_reading(int device) {
    return &fake.samples[fake.n_samples - 1].devices[device];
}

static int read_list(const char *rest, struct process *list, int *count) {
    unsigned int pid;
    unsigned long long memory;
    if (sscanf(rest, "%*d %u %llu", &pid, &memory) != 2 || *count >= MAX_LISTED) return -1;
    list[*count].pid = pid;
    list[(*count)++].memory = memory;
    return 0;
}

/* One line of the converted trace (see build.py's convert()). */
static int parse_line(char *line) {
    char word[32] = "", *rest;
    int device = -1;
    line[strcspn(line, "\n")] = 0;
    if (sscanf(line, "%31s", word) != 1) return 0;
    rest = line + strlen(word);
    while (*rest == ' ') rest++;
    if (!strcmp(word, "fake-nvml-trace")) return 0;
    if (!strcmp(word, "driver")) {
        snprintf(fake.driver, sizeof fake.driver, "%s", rest);
        return 0;
    }
    if (!strcmp(word, "cuda")) {
        fake.has_cuda = 1;
        return sscanf(rest, "%d", &fake.cuda) == 1 ? 0 : -1;
    }
    if (!strcmp(word, "init_error")) return sscanf(rest, "%u", &fake.init_error) == 1 ? 0 : -1;
    if (!strcmp(word, "count_error")) return sscanf(rest, "%u", &fake.count_error) == 1 ? 0 : -1;
    if (!strcmp(word, "pcie_ms")) return sscanf(rest, "%d", &fake.pcie_ms) == 1 ? 0 : -1;
    if (!strcmp(word, "sample")) {
        struct sample *grown = realloc(fake.samples, (fake.n_samples + 1) * sizeof *grown);
        if (!grown) return -1;
        fake.samples = grown;
        memset(&grown[fake.n_samples], 0, sizeof *grown);
        return sscanf(rest, "%lf", &grown[fake.n_samples++].t) == 1 ? 0 : -1;
    }
    if (sscanf(rest, "%d", &device) != 1 || device < 0 || device >= MAX_DEVICES) return -1;
    if (!strcmp(word, "device")) {
        struct nvmlDevice_st *d = &fake.devices[device];
        int used = 0;
        d->index = device;
        if (sscanf(rest, "%*d %79s %31s %d %d %d %u %llu %llu %u %u %u %u %n", d->uuid,
                   d->pci_bus_id, &d->compute_mode, &d->cc_major, &d->cc_minor,
                   &d->power_limit, &d->memory_total, &d->bar1_total, &d->max_clocks[0],
                   &d->max_clocks[1], &d->max_clocks[2], &d->max_clocks[3], &used) < 12)
            return -1;
        snprintf(d->name, sizeof d->name, "%s", rest + used);
        if (device >= fake.n_devices) fake.n_devices = device + 1;
        return 0;
    }
    if (device >= fake.n_devices) return -1;
    if (!strcmp(word, "unsupported")) {
        char function[96];
        struct nvmlDevice_st *d = &fake.devices[device];
        if (sscanf(rest, "%*d %95s", function) != 1) return -1;
        size_t length = strlen(d->unsupported);
        snprintf(d->unsupported + length, sizeof d->unsupported - length, " %s ", function);
        return 0;
    }
    if (!strcmp(word, "mig")) {
        struct nvmlDevice_st *m;
        if (fake.n_mig[device] >= MAX_MIG) return -1;
        m = &fake.mig[device][fake.n_mig[device]++];
        *m = fake.devices[device];
        m->parent = &fake.devices[device];
        return sscanf(rest, "%*d %79s", m->uuid) == 1 ? 0 : -1;
    }
    if (!fake.n_samples) return -1;
    struct reading *r = current_reading(device);
    if (!strcmp(word, "d"))
        return sscanf(rest, "%*d %u %u %llu %llu %llu %u %u %u %u %u %u %u %u %llu", &r->temp,
                      &r->power, &r->energy, &r->memory_used, &r->bar1_used, &r->gpu_util,
                      &r->memory_util, &r->clocks[0], &r->clocks[1], &r->clocks[2],
                      &r->clocks[3], &r->pcie_rx, &r->pcie_tx, &r->throttle) == 14 ? 0 : -1;
    if (!strcmp(word, "cp")) return read_list(rest, r->compute, &r->n_compute);
    if (!strcmp(word, "gp")) return read_list(rest, r->graphics, &r->n_graphics);
    if (!strcmp(word, "pu")) {
        struct utilization *u = &r->util[r->n_util];
        if (r->n_util >= MAX_LISTED) return -1;
        r->n_util++;
        return sscanf(rest, "%*d %u %u %u %u %u", &u->pid, &u->sm, &u->mem, &u->enc,
                      &u->dec) == 5 ? 0 : -1;
    }
    if (!strcmp(word, "err")) {
        struct sample *s = &fake.samples[fake.n_samples - 1];
        struct failure *grown = realloc(s->failures, (s->n_failures + 1) * sizeof *grown);
        if (!grown) return -1;
        s->failures = grown;
        grown += s->n_failures++;
        grown->device = device;
        return sscanf(rest, "%*d %95s %u", grown->function, &grown->code) == 2 ? 0 : -1;
    }
    return -1;
}

static nvmlReturn_t load_trace(void) {
    const char *path = getenv("FAKE_NVML_TRACE");
    char line[4096];
    int number = 0;
    FILE *file;
    forget_trace();
    fake.pcie_ms = 20;
    if (!path || !(file = fopen(path, "r"))) {
        fprintf(stderr, "fake NVML: cannot read FAKE_NVML_TRACE=%s\n", path ? path : "");
        return NVML_ERROR_DRIVER_NOT_LOADED;
    }
    while (fgets(line, sizeof line, file)) {
        number++;
        if (parse_line(line)) {
            fprintf(stderr, "fake NVML: %s line %d is not understood\n", path, number);
            fclose(file);
            return NVML_ERROR_UNKNOWN;
        }
    }
    fclose(file);
    return fake.n_samples ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

/* -- time, processes, errors -------------------------------------------------------------- */

static double elapsed(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - fake.started.tv_sec) +
           (double)(now.tv_nsec - fake.started.tv_nsec) / 1e9;
}

static int current_sample(void) {
    double t = elapsed();
    int current = 0;
    for (int i = 0; i < fake.n_samples && fake.samples[i].t <= t; i++) current = i;
    return current;
}

/* Trace PID 0 is the job: the calling process's child, as the sidecar's job is, looked up
 * once and kept after it exits, as the replay keeps the job's PID. */
static unsigned int job_pid(unsigned int pid) {
    static unsigned int child;
    DIR *proc;
    struct dirent *entry;
    if (pid) return pid;
    if (child || !(proc = opendir("/proc"))) return child ? child : (unsigned int)getpid();
    while (!child && (entry = readdir(proc))) {
        char path[300], stat[512], *end;
        int parent;
        FILE *file;
        if (!isdigit((unsigned char)entry->d_name[0])) continue;
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        if (!(file = fopen(path, "r"))) continue;
        stat[fread(stat, 1, sizeof stat - 1, file)] = 0;
        fclose(file);
        end = strrchr(stat, ')');
        if (end && sscanf(end + 1, " %*c %d", &parent) == 1 && parent == getpid())
            child = (unsigned int)atoi(entry->d_name);
    }
    closedir(proc);
    if (!child) child = (unsigned int)getpid(); /* no job: the caller stands for it */
    return child;
}

static struct nvmlDevice_st *physical(nvmlDevice_t device) {
    return device->parent ? device->parent : device;
}

/* NVML_SUCCESS, or the error this device gives for this function now. The trace names
 * functions as pynvml does: nvmlDeviceGetComputeRunningProcesses covers its _v2 and _v3. */
static nvmlReturn_t check(nvmlDevice_t device, const char *symbol) {
    char word[100], function[96], *version;
    int now;
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    if (!device) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(function, sizeof function, "%s", symbol);
    version = strstr(function, "_v");
    if (version && isdigit((unsigned char)version[2])) *version = 0;
    snprintf(word, sizeof word, " %s ", function);
    if (strstr(physical(device)->unsupported, word)) return NVML_ERROR_NOT_SUPPORTED;
    now = current_sample();
    for (int i = 0; i <= now; i++)
        for (int j = 0; j < fake.samples[i].n_failures; j++) {
            struct failure *f = &fake.samples[i].failures[j];
            if (f->device == physical(device)->index &&
                (!strcmp(f->function, function) || !strcmp(f->function, "*")))
                return f->code;
        }
    return NVML_SUCCESS;
}

static struct reading *now(nvmlDevice_t device) {
    return &fake.samples[current_sample()].devices[physical(device)->index];
}

#define GUARD(device)                                        \
    do {                                                     \
        nvmlReturn_t status_ = check((device), __func__);    \
        if (status_ != NVML_SUCCESS) return status_;         \
    } while (0)
#define NEED(pointer) \
    do { if (!(pointer)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

static nvmlReturn_t copy_string(char *buffer, unsigned int length, const char *value) {
    NEED(buffer);
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buffer, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

/* -- system --------------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    nvmlReturn_t status = load_trace();
    (void)flags;
    if (status == NVML_SUCCESS && fake.init_error) status = fake.init_error;
    if (status != NVML_SUCCESS) return status;
    clock_gettime(CLOCK_MONOTONIC, &fake.started);
    clock_gettime(CLOCK_REALTIME, &fake.started_wall);
    fake.initialized = 1;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    fake.initialized = 0;
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, fake.driver);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    NEED(cudaDriverVersion);
    if (!fake.has_cuda) return NVML_ERROR_LIBRARY_NOT_FOUND;
    *cudaDriverVersion = fake.cuda;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    NEED(deviceCount);
    if (fake.count_error) return fake.count_error;
    *deviceCount = (unsigned int)fake.n_devices;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= (unsigned int)fake.n_devices) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &fake.devices[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < fake.n_devices; i++) {
        if (!strcmp(fake.devices[i].uuid, uuid)) {
            *device = &fake.devices[i];
            return NVML_SUCCESS;
        }
        for (int j = 0; j < fake.n_mig[i]; j++)
            if (!strcmp(fake.mig[i][j].uuid, uuid)) {
                *device = &fake.mig[i][j];
                return NVML_SUCCESS;
            }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice,
                                                               nvmlDevice_t *device) {
    if (!fake.initialized) return NVML_ERROR_UNINITIALIZED;
    if (!migDevice || !device || !migDevice->parent) return NVML_ERROR_INVALID_ARGUMENT;
    *device = migDevice->parent;
    return NVML_SUCCESS;
}

/* MIG mode is on where the trace names MIG instances; they are the GPU's MIG devices 0.. */
EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                         unsigned int *pendingMode) {
    GUARD(device);
    NEED(currentMode);
    NEED(pendingMode);
    *currentMode = *pendingMode = fake.n_mig[physical(device)->index] ? 1 : 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    GUARD(device);
    NEED(count);
    if (!fake.n_mig[physical(device)->index]) return NVML_ERROR_NOT_SUPPORTED;
    *count = MAX_MIG;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *migDevice) {
    GUARD(device);
    NEED(migDevice);
    if (index >= MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    if ((int)index >= fake.n_mig[physical(device)->index]) return NVML_ERROR_NOT_FOUND;
    *migDevice = &fake.mig[physical(device)->index][index];
    return NVML_SUCCESS;
}

/* -- static device fields ------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    GUARD(device);
    return copy_string(name, length, device->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    GUARD(device);
    return copy_string(uuid, length, device->uuid);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    unsigned int domain = 0, bus = 0, slot = 0;
    GUARD(device);
    NEED(pci);
    memset(pci, 0, sizeof *pci);
    sscanf(physical(device)->pci_bus_id, "%x:%x:%x", &domain, &bus, &slot);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = slot;
    pci->pciDeviceId = 0x20B010DE; /* A100-SXM4-40GB, NVIDIA's vendor id */
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
             domain, bus, slot);
    snprintf(pci->busId, sizeof pci->busId, "%s", physical(device)->pci_bus_id);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t *mode) {
    GUARD(device);
    NEED(mode);
    *mode = (nvmlComputeMode_t)device->compute_mode;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major,
                                                      int *minor) {
    GUARD(device);
    NEED(major && minor);
    *major = device->cc_major;
    *minor = device->cc_minor;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    GUARD(device);
    NEED(limit);
    *limit = device->power_limit;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                             unsigned int *clock) {
    GUARD(device);
    NEED(clock);
    if ((unsigned int)type > NVML_CLOCK_VIDEO) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->max_clocks[type] == NOT_READ) return NVML_ERROR_NOT_SUPPORTED;
    *clock = device->max_clocks[type];
    return NVML_SUCCESS;
}

/* -- dynamic device fields ------------------------------------------------------------------ */

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    GUARD(device);
    NEED(memory);
    memory->total = physical(device)->memory_total;
    memory->used = now(device)->memory_used;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device,
                                               nvmlBAR1Memory_t *bar1Memory) {
    GUARD(device);
    NEED(bar1Memory);
    bar1Memory->bar1Total = physical(device)->bar1_total;
    bar1Memory->bar1Used = now(device)->bar1_used;
    bar1Memory->bar1Free = bar1Memory->bar1Total - bar1Memory->bar1Used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device,
                                            nvmlTemperatureSensors_t sensorType,
                                            unsigned int *temp) {
    GUARD(device);
    NEED(temp);
    if (sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = now(device)->temp;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    GUARD(device);
    NEED(power);
    *power = now(device)->power;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                       unsigned long long *energy) {
    GUARD(device);
    NEED(energy);
    *energy = now(device)->energy;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                                 nvmlUtilization_t *utilization) {
    GUARD(device);
    NEED(utilization);
    utilization->gpu = now(device)->gpu_util;
    utilization->memory = now(device)->memory_util;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                          unsigned int *clock) {
    GUARD(device);
    NEED(clock);
    if ((unsigned int)type > NVML_CLOCK_VIDEO) return NVML_ERROR_INVALID_ARGUMENT;
    if (now(device)->clocks[type] == NOT_READ) return NVML_ERROR_NOT_SUPPORTED;
    *clock = now(device)->clocks[type];
    return NVML_SUCCESS;
}

/* The driver samples PCIe over a 20 ms window: the call costs that much on hardware. */
EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device,
                                               nvmlPcieUtilCounter_t counter,
                                               unsigned int *value) {
    struct timespec window = {0, (long)fake.pcie_ms * 1000000L};
    GUARD(device);
    NEED(value);
    nanosleep(&window, NULL);
    if (counter == NVML_PCIE_UTIL_TX_BYTES) *value = now(device)->pcie_tx;
    else if (counter == NVML_PCIE_UTIL_RX_BYTES) *value = now(device)->pcie_rx;
    else return NVML_ERROR_INVALID_ARGUMENT;
    return *value == NOT_READ ? NVML_ERROR_NOT_SUPPORTED : NVML_SUCCESS;
}

static nvmlReturn_t clock_reasons(nvmlDevice_t device, unsigned long long *reasons) {
    NEED(reasons);
    *reasons = now(device)->throttle;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                             unsigned long long *reasons) {
    GUARD(device);
    return clock_reasons(device, reasons);
}

#ifndef FAKE_NVML_OLD_DRIVER /* added in driver 535 */
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device,
                                                          unsigned long long *reasons) {
    GUARD(device);
    return clock_reasons(device, reasons);
}
#endif

/* NVML's two-call protocol: a count with no buffer (SUCCESS when there is nothing, else
 * INSUFFICIENT_SIZE), then the buffer. */
static nvmlReturn_t list_processes(const struct process *list, int count,
                                   unsigned int *infoCount, nvmlProcessInfo_v2_t *infos) {
    NEED(infoCount);
    if (*infoCount < (unsigned int)count || (!infos && count)) {
        *infoCount = (unsigned int)count;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (int i = 0; i < count; i++) {
        infos[i].pid = job_pid(list[i].pid);
        infos[i].usedGpuMemory = list[i].memory;
        infos[i].gpuInstanceId = 0xFFFFFFFF;
        infos[i].computeInstanceId = 0xFFFFFFFF;
    }
    *infoCount = (unsigned int)count;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                           unsigned int *infoCount,
                                                           nvmlProcessInfo_v2_t *infos) {
    GUARD(device);
    return list_processes(now(device)->compute, now(device)->n_compute, infoCount, infos);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device,
                                                            unsigned int *infoCount,
                                                            nvmlProcessInfo_v2_t *infos) {
    GUARD(device);
    return list_processes(now(device)->graphics, now(device)->n_graphics, infoCount, infos);
}

#ifndef FAKE_NVML_OLD_DRIVER /* added in driver 510, the same struct as _v2 */
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t, unsigned int *,
                                                           nvmlProcessInfo_t *)
    __attribute__((alias("nvmlDeviceGetComputeRunningProcesses_v2")));
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t, unsigned int *,
                                                            nvmlProcessInfo_t *)
    __attribute__((alias("nvmlDeviceGetGraphicsRunningProcesses_v2")));
#endif

/* Samples newer than lastSeenTimeStamp (CPU time, microseconds); NOT_FOUND when none is. */
EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                                   nvmlProcessUtilizationSample_t *utilization,
                                                   unsigned int *processSamplesCount,
                                                   unsigned long long lastSeenTimeStamp) {
    /* As the driver answers (seen on an H200): one entry per process, its latest sample of
     * those taken after lastSeenTimeStamp; NOT_FOUND when there is none. A trace sample's
     * time on the CPU clock is when nvmlInit ran plus its offset. */
    nvmlProcessUtilizationSample_t found[MAX_LISTED];
    unsigned int n = 0;
    GUARD(device);
    NEED(processSamplesCount);
    for (int index = current_sample(); index >= 0; index--) {
        struct reading *reading = &fake.samples[index].devices[physical(device)->index];
        unsigned long long stamp = (unsigned long long)(
            (fake.started_wall.tv_sec + fake.started_wall.tv_nsec / 1e9 + fake.samples[index].t)
            * 1e6) + 1;
        if (stamp <= lastSeenTimeStamp) break;
        for (int i = 0; i < reading->n_util; i++) {
            unsigned int pid = job_pid(reading->util[i].pid), seen = 0;
            for (unsigned int k = 0; k < n; k++) seen |= found[k].pid == pid;
            if (seen || n >= MAX_LISTED) continue;
            found[n].pid = pid;
            found[n].timeStamp = stamp;
            found[n].smUtil = reading->util[i].sm;
            found[n].memUtil = reading->util[i].mem;
            found[n].encUtil = reading->util[i].enc;
            found[n].decUtil = reading->util[i].dec;
            n++;
        }
    }
    if (!n) return NVML_ERROR_NOT_FOUND;
    if (!utilization || *processSamplesCount < n) {
        *processSamplesCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(utilization, found, n * sizeof found[0]);
    *processSamplesCount = n;
    return NVML_SUCCESS;
}
