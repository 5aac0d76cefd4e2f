import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct MergeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Stream a 50/50 linear merge of two synthetic sharded BF16 checkpoints (>= 2 GB each) and compare with a plain copy of the same bytes.",
        discussion: "Inputs, copy and output go to a temporary folder (--dir, else $TMPDIR) that is removed at the end; it needs about 3x --size of free disk. Build with -c release to measure.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Size of each synthetic checkpoint (e.g. 2.2GB).")
    var size: String = "2.2GB"

    @Option(help: "Folder for the temporary files (default: $TMPDIR).")
    var dir: String?

    func run() throws {
        options.apply()
        let bytes = try parseByteSize(size)
        let folder = dir.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory
        let f = try MergeBenchmark.run(directory: folder, bytesPerModel: bytes) { if !options.json { printError($0) } }
        if options.json { return try printJSON(f) }
        print("inputs: 2 x \(formatBytes(f.bytesPerModel)) BF16, \(f.tensors) tensors each, \(f.inputShardsPerModel) shards each (generated in \(String(format: "%.1f", f.generateSeconds)) s)")
        print(String(format: "copy of the same bytes: %.2f s, %.2f GB/s", f.copySeconds, f.copyBytesPerSecond / 1e9))
        print(String(format: "linear merge (streamed, %d output files): %.2f s, %.2f GB/s of input = %.0f%% of copy throughput (target >= 50%%)",
                     f.outputFiles, f.mergeSeconds, f.mergeBytesPerSecond / 1e9, f.mergeFractionOfCopy * 100))
        print(String(format: "input SHA-256 digests for the metadata: %.2f s (before merging, not in the merge time)", f.hashSeconds))
        print("peak resident memory: \(f.peakResidentBytes.map(formatBytes) ?? "unknown") (target < 300 MB); before the merge: \(f.peakResidentBytesBeforeMerge.map(formatBytes) ?? "unknown")")
    }
}
