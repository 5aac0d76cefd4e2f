import BasinFuzzTargets
import Foundation

// `basin-fuzz`: one executable for every fuzz target (docs/reliability.md).
//
// Built normally it replays files: `basin-fuzz TARGET FILE|FOLDER...` runs each file through the target (to
// reproduce a crash the fuzzer found). Built by .ci/run with `-sanitize=fuzzer -DBASIN_LIBFUZZER` it is a
// libFuzzer binary: `BASIN_FUZZ_TARGET=TARGET basin-fuzz [libFuzzer flags] CORPUS...`. SwiftPM renames an
// executable's entry point and links `main` to it, which collides with libFuzzer's own main, so the entry
// point here hands control to libFuzzer through LLVMFuzzerRunDriver and also exports LLVMFuzzerTestOneInput.

func selectedTarget() -> FuzzTarget {
    let name = ProcessInfo.processInfo.environment["BASIN_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set BASIN_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return t
}

nonisolated(unsafe) var fuzzTarget: FuzzTarget = .safetensors

@_cdecl("LLVMFuzzerTestOneInput")
public func basinFuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzTarget.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if BASIN_LIBFUZZER
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

fuzzTarget = selectedTarget()
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, basinFuzzOne))
#else
let args = Array(CommandLine.arguments.dropFirst())
guard let first = args.first, let target = FuzzTarget(rawValue: first) else {
    print("usage: basin-fuzz TARGET FILE|FOLDER...   (targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
    exit(2)
}
var files: [URL] = []
for path in args.dropFirst() {
    let url = URL(fileURLWithPath: path)
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
        files += ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { url.appendingPathComponent($0) }
    } else {
        files.append(url)
    }
}
for file in files {
    guard let data = try? Data(contentsOf: file) else { continue }
    data.withUnsafeBytes { target.run($0) }
}
print("\(target.rawValue): \(files.count) input(s) ran without a crash")
#endif
