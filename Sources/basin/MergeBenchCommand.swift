import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct MergeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge three synthetic 1 GB BF16 checkpoints (LLaMA-shaped names) with linear, task arithmetic and TIES, and compare with cp of one input.",
        discussion: """
        Prints, for each method, the MB/s of output written (end to end: plan, merge, write; input digests from the
        bench's digest cache, or from scratch with --cold-digests, whose cost it prints too), that
        rate as a fraction of cp's in the same run (target >= 50%), and the merge's peak resident memory (target < 1 GB).
        Inputs and outputs go to a temporary folder (--dir, else $TMPDIR) that is removed at the end; it needs about
        5x --size of free disk. Build with -c release to measure.
        """)

    @OptionGroup var options: BenchOptions

    @Option(help: "Size of each synthetic checkpoint (e.g. 1GB).")
    var size: String = "1GB"

    @Flag(help: "Sharded inputs (4 shards each) and sharded output.")
    var sharded = false

    @Option(help: "Methods to time, comma-separated.")
    var methods: String = "linear,task_arithmetic,ties"

    @Option(help: "Folder for the temporary files (default: $TMPDIR).")
    var dir: String?

    @Option(help: "Merge threads (default: the cores).")
    var mergeThreads: Int?

    @Flag(help: "Keep the generated checkpoints (the folder is printed).")
    var keep = false

    @Option(help: "Rounds of cp then every method; each merge is compared with its round's cp and the medians are printed (1 to 20).")
    var rounds: Int = 3

    @Flag(help: "Every merge hashes its inputs from scratch (default: the digests recorded when the inputs were written are found in the bench's digest cache, as when re-merging the same checkpoints).")
    var coldDigests = false

    func validate() throws {
        _ = try parseByteSize(size, option: "--size")
        if let mergeThreads { try Check.range(mergeThreads, 1...Check.maxThreads, "--merge-threads") }
        try Check.range(rounds, 1...20, "--rounds")
    }

    func run() throws {
        options.apply()
        let bytes = try parseByteSize(size, option: "--size")
        let list = try methods.split(separator: ",").map { name -> MergeMethod in
            guard let m = MergeMethod(rawValue: String(name)), MergeMethod.mergekitMethods.contains(m) else {
                throw ValidationError("unknown method '\(name)' (e.g. linear,task_arithmetic,ties)")
            }
            return m
        }
        let folder = dir.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory
        try FileCheck.folder(folder.path)
        // Three inputs, the copy and the merge: about 5x --size.
        if let free = try? FileManager.default.attributesOfFileSystem(forPath: folder.path)[.systemFreeSize] as? NSNumber {
            let needed = MemoryBudget.product(bytes, 5)
            guard free.int64Value >= Int64(needed) else {
                throw CLIError(.insufficientDisk, "\(folder.path) has \(formatBytes(Int(free.int64Value))) free but --size \(size) needs about \(formatBytes(needed)) (5x); use --dir or a smaller --size")
            }
        }
        let f = try MergeBenchmark.run(directory: folder, bytesPerModel: bytes, sharded: sharded, methods: list, threads: mergeThreads, keep: keep,
                                       coldDigests: coldDigests, rounds: rounds) {
            if !options.json { printError($0) }
        }
        if options.json { return try printJSON(f) }
        let mb = { (x: Double) in String(format: "%.0f MB/s", x / 1e6) }
        print("inputs: 3 x \(formatBytes(f.bytesPerModel)) BF16 (base + 2 fine-tunes), \(f.tensors) tensors, \(f.layers) LLaMA-shaped layers, \(f.inputShardsPerModel) shard(s) each\(f.outputShardSize.map { ", output shards of \(formatBytes($0))" } ?? ""), \(f.threads) merge threads")
        let series = { (xs: [Double], format: String) in xs.map { String(format: format, $0) }.joined(separator: " ") }
        print(String(format: "cp of one input: %.2f s, %@ (median of %d rounds: %@ s; cp + fsync: %.2f s, %@)", f.copySeconds, mb(f.copyBytesPerSecond),
                     f.rounds, series(f.copyRoundSeconds, "%.2f"), f.copySyncSeconds, mb(f.copySyncBytesPerSecond)))
        print(String(format: "input digests from scratch (SHA-256 of every input file, all at once): %.2f s, CPU %.2f s; the merges %@",
                     f.digestSeconds, f.digestCPUSeconds, f.coldDigests ? "hash them from scratch again (--cold-digests)" : "find them in the digest cache (recorded as the inputs were written)"))
        for m in f.merges {
            print(String(format: "%-16@ %.2f s, %@ written = %.0f%% of cp (target >= 50%%; rounds %@), peak RSS %@ (target < 1 GB; %@ before), CPU %.2f s, digests %.2f s %@",
                         m.method, m.seconds, mb(m.bytesPerSecond), m.fractionOfCopy * 100, series(m.roundFractions.map { $0 * 100 }, "%.0f%%"),
                         m.peakResidentBytes.map(formatBytes) ?? "unknown",
                         m.residentBytesBefore.map(formatBytes) ?? "?", m.cpuSeconds, m.hashSeconds, f.coldDigests ? "overlapped" : "(cached)"))
        }
        // Best against best: the fastest round of each against the fastest cp (the machine at its quietest).
        print(String(format: "fastest rounds: cp %.2f s; ", f.copyFastestSeconds) + f.merges.map {
            String(format: "%@ %.2f s = %.0f%% of the fastest cp (rounds %@ s)", $0.method, $0.fastestSeconds, $0.fractionOfFastestCopy * 100,
                   series($0.roundSeconds, "%.2f"))
        }.joined(separator: "; "))
    }
}
