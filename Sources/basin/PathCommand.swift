import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

extension PathType: ExpressibleByArgument {}

struct PathCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "path",
        abstract: "Loss and accuracy along a path between models: the segment, a chain through several models, or a fitted polychain/Bezier curve; barriers, summaries and the path's length.")

    @Argument(help: "Two or more models (a chain A -> B -> C ... for a linear path; exactly two with --bends).")
    var models: [String]

    @Option(help: "Data set (safetensors with x and y); repeat for several (e.g. train and test).")
    var data: [String] = []

    @Option(help: "Path type: linear, polychain or bezier (default: the bends file's type, else linear).")
    var type: PathType?

    @Option(help: "Bends file written by `basin fit` (needed for polychain and bezier).")
    var bends: String?

    @Option(help: "Number of equally spaced points in [0, 1] (>= 2).")
    var points: Int = 25

    @Option(help: "Evaluation batch size (rows per pass; small batches keep each point's activations in cache).")
    var batch: Int = 512

    @OptionGroup var arch: ArchitectureOptions

    @Flag(help: "Print JSON (see docs: keys per data set).")
    var json = false

    @Flag(help: "Print CSV: data,t,loss,accuracy.")
    var csv = false

    @Flag(help: "Evaluate naively (build every point's weights and run the whole network); for checking.")
    var naive = false

    @OptionGroup var correction: CorrectionOptions

    @Flag(help: "With --bn-reset or --repair: also evaluate the naive curve and the other correction (on the same data) and report the naive, BN-reset and REPAIR barriers side by side (JSON key `corrections`).")
    var compare = false

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give at least two models") }
        guard !data.isEmpty else { throw ValidationError("give at least one --data set") }
        try Check.range(points, 2...PathCommand.maxPoints, "--points")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        if json && csv { throw ValidationError("choose one of --json and --csv") }
        if bends != nil && models.count != 2 { throw ValidationError("--bends needs exactly two models (the endpoints)") }
        if let type, type != .linear, bends == nil {
            throw ValidationError("a \(type.rawValue) path needs --bends FILE (fit one with `basin fit A B --data TRAIN --type \(type.rawValue) --out FILE`)")
        }
        if type == .linear, bends != nil { throw ValidationError("--bends goes with --type polychain or bezier, not linear") }
        try correction.validate()
        if correction.bnReset != nil && correction.repair != nil && !compare {
            throw ValidationError("choose one of --bn-reset and --repair (or add --compare to report both beside the naive curve)")
        }
        if compare && correction.bnReset == nil && correction.repair == nil {
            throw ValidationError("--compare needs --bn-reset DATA or --repair DATA (the data set the corrections use)")
        }
    }

    /// One curve's barriers and points, for `corrections`.
    struct Curve: Encodable {
        var barrier: PathBarrier
        var meanBarrier: MeanBarrier
        var points: [PathPoint]

        enum CodingKeys: String, CodingKey {
            case barrier, points
            case meanBarrier = "mean_barrier"
        }
    }

    struct Block: Encodable {
        var models: [String]
        var metrics: PathMetrics
        /// What `points` are: naive, bn_reset or repair.
        var correction: String
        var corrections: [String: Curve]?

        func encode(to encoder: Encoder) throws {
            try metrics.encode(to: encoder)
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(models, forKey: .models)
            try c.encode(correction, forKey: .correction)
            try c.encodeIfPresent(corrections, forKey: .corrections)
        }

        enum Key: String, CodingKey { case models, correction, corrections }
    }

    struct Several: Encodable {
        var type: PathType
        var models: [String]
        var length: Double
        var datasets: [Block]
    }

    /// More points than this add nothing a plot can show and only take time.
    static let maxPoints = 10_001

    func run() throws {
        var io = IOPlan()
        try io.models(models)
        try io.files(data)
        try io.file(bends)
        try io.file(arch.archFile)
        try io.file(correction.bnReset)
        try io.file(correction.repair)
        try io.check()
        let loaded = try models.map { try arch.load($0) }
        for m in loaded { warnNonFinite(m) }
        let first = loaded[0]
        for (i, m) in loaded.enumerated().dropFirst() {
            try first.params.checkCompatible(with: m.params, "\(first.path) and \(m.path)")
            guard m.architecture == first.architecture else {
                throw ValidationError("\(models[i]) has a different architecture from \(models[0])")
            }
        }
        let datasets = try data.map { try Dataset(path: $0) }
        for d in datasets { try LoadedModel.check(d, fits: first) }

        let path: ModelPath
        if let bends {
            let url = URL(fileURLWithPath: bends)
            let file = try BendsFile.read(url, like: first.params)
            if let type, type != file.type {
                throw ValidationError("\(bends) holds \(file.type.rawValue) bends, not \(type.rawValue)")
            }
            try BendsFile.checkEndpoints(file, file: url, startSHA256: try FileDigest.sha256(of: loaded[0].source),
                                         endSHA256: try FileDigest.sha256(of: loaded[1].source))
            path = try .withBends(file.type, from: loaded[0].params, to: loaded[1].params, bends: file.bends)
        } else {
            path = try .chain(loaded.map(\.params))
        }

        // The fast evaluator keeps X W^T of every control point for every data set.
        let firstWidth = first.params.pairs.first { $0.1.rank == 2 }?.1.shape[0] ?? 1
        let rows = MemoryBudget.sum(datasets.map(\.count))
        try MemoryBudget.check(MemoryBudget.product(path.controlPoints.count, rows, firstWidth, 4), for: "evaluating the path on \(rows) rows")
        // The curves to evaluate: the one asked for first (its points are the output's), then with --compare the others.
        var curves: [PointCorrection] = []
        if let primary = try correction.make(for: first) { curves.append(primary) } else { curves.append(.none) }
        if compare {
            curves.append(.none)
            if case .repair = curves[0] {
                if BatchNormReset.hasBatchNorm(first.architecture), let d = correction.bnReset ?? correction.repair {
                    curves.append(.bnReset(try BatchNormReset(network: first.network, data: try correction.dataset(d, fits: first),
                                                              batchSize: correction.bnBatch, model: first.path)))
                }
            } else if let d = correction.repair ?? correction.bnReset {
                curves.append(.repair(try Repair(network: first.network, like: first.params, data: try correction.dataset(d, fits: first),
                                                 batchSize: correction.bnBatch, model: first.path)))
            }
        }
        let showProgress = standardErrorIsTerminal && !json && !csv
        var all: [[PathMetrics]] = []
        for (k, c) in curves.enumerated() {
            let evaluator = PathEvaluator(path: path, network: first.network, datasets: datasets, batchSize: batch, fast: !naive, correction: c)
            let label = curves.count > 1 ? " (\(c.name), curve \(k + 1)/\(curves.count))" : ""
            all.append(evaluator.metrics(points: points, length: path.length(), onPoint: { i, _ in
                if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[Kpoint \(i + 1)/\(points)\(label)".utf8)) }
            })!)
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let results = all[0]
        // Per data set: every curve's barriers and points, under its name.
        let compared: [[String: Curve]]? = compare ? results.indices.map { d in
            Dictionary(uniqueKeysWithValues: zip(curves, all).map { c, m in
                (c.name, Curve(barrier: m[d].barrier, meanBarrier: m[d].meanBarrier, points: m[d].points))
            })
        } : nil

        if json {
            let blocks = results.enumerated().map { Block(models: models, metrics: $0.element, correction: curves[0].name, corrections: compared?[$0.offset]) }
            if blocks.count == 1 { return try printJSON(blocks[0]) }
            return try printJSON(Several(type: path.type, models: models, length: path.length(), datasets: blocks))
        }
        if csv {
            if compare {
                print("data,correction,t,loss,accuracy")
                for (c, m) in zip(curves, all) {
                    for r in m { for p in r.points { print("\(r.data),\(c.name),\(p.t),\(p.loss),\(p.accuracy)") } }
                }
                return
            }
            print("data,t,loss,accuracy")
            for m in results {
                for p in m.points { print("\(m.data),\(p.t),\(p.loss),\(p.accuracy)") }
            }
            return
        }
        print("\(path.type.rawValue) path: \(models.joined(separator: " -> "))"
              + (bends.map { " (bends: \($0))" } ?? "") + String(format: ", length %.4f", path.length()))
        switch curves[0] {
        case .none: break
        case .bnReset: print("each point's BatchNorm statistics recomputed on \(correction.bnReset!) (batch \(correction.bnBatch)) before evaluation")
        case .repair: print("each point REPAIRed on \(correction.repair!) (batch \(correction.bnBatch)) before evaluation")
        }
        for (d, m) in results.enumerated() {
            print("")
            print("\(m.data) (\(m.samples) samples)")
            print("      t      loss  accuracy")
            for p in m.points { print(String(format: "%7.4f  %8.5f  %8.4f", p.t, p.loss, p.accuracy)) }
            print(String(format: "barrier: loss %.5f (at t=%.3f), accuracy %.4f (error barrier; max drop below the endpoints' interpolation)",
                         m.barrier.loss, m.barrier.lossAt, m.barrier.accuracy))
            print(String(format: "barrier vs endpoints' mean: loss %.5f, error %.4f", m.meanBarrier.loss, m.meanBarrier.error))
            print(String(format: "loss: min %.5f max %.5f mean %.5f integral %.5f", m.lossSummary.min, m.lossSummary.max,
                         m.lossSummary.mean, m.lossSummary.integral))
            print(String(format: "accuracy: min %.4f max %.4f mean %.4f integral %.4f", m.accuracySummary.min, m.accuracySummary.max,
                         m.accuracySummary.mean, m.accuracySummary.integral))
            if compare {
                print("loss barriers: " + zip(curves, all).map { String(format: "%@ %.5f", $0.0.name, $0.1[d].barrier.loss) }.joined(separator: ", "))
            }
        }
    }
}

struct PathBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "path",
        abstract: "Evaluation of a 21-point linear path over an MLP 784-512-512-10 on 10k synthetic samples: effective rate (naive FLOPs / time) against the large-sgemm rate.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Points along the path.")
    var points: Int = 21

    @Option(help: "Synthetic samples.")
    var samples: Int = 10_000

    @Option(help: "Evaluation batch size (rows per pass; small batches keep each point's activations in cache).")
    var batch: Int = 512

    @Option(help: "Path type: linear, polychain or bezier (random bends).")
    var type: PathType = .linear

    @Option(help: "Bends for polychain and bezier.")
    var bends: Int = 1

    @Flag(help: "Also time the naive evaluation (weights built per point, whole network run).")
    var naive = false

    func validate() throws {
        try Check.range(points, 2...PathCommand.maxPoints, "--points")
        try Check.range(samples, 1...10_000_000, "--samples")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        try Check.range(bends, 1...64, "--bends")
        // Synthetic 784-feature inputs plus the first-layer products of every control point.
        try MemoryBudget.check(MemoryBudget.product(samples, 784 + 512 * (bends + 2), 4, 2), for: "--samples \(samples)")
    }

    struct Report: Encodable {
        var threads: Int
        var sgemm: Benchmarks.SgemmFigure
        var path: PathBenchmark.Figure
        var naive: PathBenchmark.Figure?
        var effectiveOverSgemm: Double
    }

    func run() throws {
        options.apply()
        // The machine is shared and noisy: take the best sgemm rate from before and after the path runs,
        // so the ratio is never flattered by a busy moment during the sgemm measurement.
        let before = Benchmarks.sgemmRate()
        let p = PathBenchmark.run(samples: samples, points: points, batchSize: batch, type: type, bends: bends)
        let n = naive ? PathBenchmark.run(samples: samples, points: points, batchSize: batch, fast: false, type: type, bends: bends) : nil
        let after = Benchmarks.sgemmRate()
        let s = after.gflops > before.gflops ? after : before
        let report = Report(threads: BLAS.threads, sgemm: s, path: p, naive: n, effectiveOverSgemm: p.effectiveGflops / s.gflops)
        if options.json { return try printJSON(report) }
        print("OpenBLAS threads: \(report.threads)")
        print(String(format: "sgemm %dx%d: %.1f GFLOP/s", s.n, s.n, s.gflops))
        func line(_ label: String, _ f: PathBenchmark.Figure) {
            let kind = f.type == .linear ? "linear" : "\(f.type.rawValue) (\(f.bends) bend\(f.bends == 1 ? "" : "s"))"
            print(String(format: "%@ %d-point %@ path, MLP %@ on %d samples (batch %d): %.1f ms (setup %.1f ms), effective %.1f GFLOP/s",
                         label, f.points, kind, f.sizes.map(String.init).joined(separator: "-"), f.samples, f.batchSize,
                         f.seconds * 1e3, f.setupSeconds * 1e3, f.effectiveGflops))
        }
        line("fast ", p)
        if let n { line("naive", n) }
        print(String(format: "effective rate / sgemm rate: %.2fx (target >= 1.3x)", report.effectiveOverSgemm))
    }
}
