// swift-tools-version: 6.0
import Foundation
import PackageDescription

// Release builds compile for the CPU that builds them, so the kernels get
// its FMA and vector units. SwiftPM always builds from source on the machine
// that runs the trainer, which makes this safe; for a cluster whose login
// node differs from its compute nodes, set HEADLINE_TARGET_CPU (for example
// to haswell; swiftc does not take x86-64-v3) to the oldest CPU the binary
// must run on.
let targetCPU = Context.environment["HEADLINE_TARGET_CPU"] ?? "native"
let fastMath: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .release))
]

// The matrix kernels hold 6 × 64 tiles in registers when the target has
// AVX-512 (32 vector registers) and 6 × 16 tiles otherwise, where the wide
// tile would spill. "native" asks the building machine; a named CPU is
// looked up in the list of LLVM's AVX-512 x86 CPUs.
let avx512CPUs: Set<String> = [
    "skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
    "icelake-client", "icelake-server", "tigerlake", "rocketlake",
    "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
    "knl", "knm", "znver4", "znver5",
]
let hasAVX512 =
    targetCPU == "native"
    ? ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .contains(" avx512f") ?? false)
    : avx512CPUs.contains(targetCPU)
let kernelSettings: [SwiftSetting] =
    fastMath + (hasAVX512 ? [.define("HEADLINE_AVX512")] : [])

let package = Package(
    name: "HeadlineTrainer",
    products: [
        .executable(name: "headline-trainer", targets: ["Launcher"]),
        // Times the matrix products and activations on the model's shapes;
        // scripts/bench-kernels.sh runs it next to numpy.
        .executable(name: "kernel-bench", targets: ["KernelBench"]),
    ],
    targets: [
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(name: "Collective", dependencies: ["CMPI"]),
        // The SIGTERM/SIGINT handlers: C, so they touch only a
        // sig_atomic_t (see its header).
        .target(name: "CStopSignal"),
        .target(name: "Network", swiftSettings: kernelSettings),
        .executableTarget(
            name: "KernelBench",
            dependencies: ["Network"],
            swiftSettings: fastMath
        ),
        .executableTarget(
            name: "Launcher",
            dependencies: ["Network", "Collective", "CStopSignal"],
            swiftSettings: fastMath
        ),
        // Runs every collective under mpirun and checks the results on
        // each rank; CollectiveTests launches it.
        .executableTarget(
            name: "CollectiveCheck",
            dependencies: ["Collective"],
            path: "Tests/CollectiveCheck"
        ),
        .testTarget(
            name: "NetworkTests",
            dependencies: ["Network"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "CollectiveTests", dependencies: ["Collective"]),
        // Counts a thread's heap allocations, for the test that a training
        // step makes none; linked into the test process only.
        .target(name: "CAllocationCount", path: "Tests/CAllocationCount"),
        .testTarget(
            name: "LauncherTests",
            dependencies: ["Launcher", "Network", "CAllocationCount"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
