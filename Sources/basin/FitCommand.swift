import ArgumentParser
import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Fit a low-loss polychain or Bezier curve between two models, or through a chain of three or more (one curve per consecutive pair), as Garipov et al. 2018: endpoints fixed, bends trained on E_t~U(0,1) L(phi(t)), written as safetensors.",
        discussion: """
            basin fit A B --data TRAIN --out bends.safetensors
            basin fit A B C D --data TRAIN --out bends.safetensors   writes bends-1.safetensors (A -> B), bends-2 (B -> C), bends-3 (C -> D)

            With --test (or --json, --csv, --svg) the fitted curves are evaluated at --points per curve on the test
            set (else the training set) beside the straight chain; --svg FILE plots both. With --bn-reset TRAIN (or
            --repair TRAIN) every point of both is corrected first, as `basin path` does; the fit itself is unchanged.
            """)

    @Argument(help: "Two models (w_A, w_B), or a chain of three or more.")
    var models: [String]

    @Option(help: "Training data set (safetensors with x and y).")
    var data: String

    @Option(help: "Curve type: bezier or polychain.")
    var type: PathType = .bezier

    @Option(help: "Number of bends (k = 1: the quadratic Bezier / the one-bend polychain).")
    var bends: Int = 1

    @Option(help: "Start from the bends in this file instead of bends on the segment.")
    var initBends: String?

    @Option(help: "Epochs.")
    var epochs: Int = 30

    @Option(help: "Learning rate.")
    var lr: Float = 1e-2

    @Option(help: "Learning-rate schedule: garipov (full rate for half the epochs, then down to 1%; steady with several bends) or constant.")
    var schedule: LearningRateSchedule = .garipov

    @Option(help: "Minibatch size (a fresh t ~ U(0,1) for every minibatch).")
    var batch: Int = 64

    @Option(help: "Seed for shuffling and the t draws.")
    var seed: UInt64 = 0

    @Option(help: "Optimiser: adam or sgd.")
    var optimizer: OptimizerKind = .adam

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 penalty on the bends (weight decay).")
    var l2: Float = 0

    @Option(help: "After fitting, report the barrier on this data set (--points points per curve).")
    var test: String?

    @OptionGroup var arch: ArchitectureOptions

    @OptionGroup var correction: CorrectionOptions

    @Option(help: "Output bends file (.safetensors); with a chain, STEM-1.safetensors, STEM-2.safetensors ... one per curve.")
    var out: String

    @Option(help: "Points per curve when evaluating after the fit (>= 3).")
    var points: Int = 25

    @OptionGroup var output: AnalysisOutputOptions

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var nonFinite: NonFiniteOptions

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give two models, or a chain of three or more (got \(models.count))") }
        if initBends != nil && models.count != 2 { throw ValidationError("--init-bends goes with two models, not a chain") }
        try Check.range(points, 3...10_001, "--points")
        guard type != .linear else { throw ValidationError("--type must be bezier or polychain (a linear path has nothing to fit)") }
        try Check.range(bends, 1...64, "--bends")
        try Check.range(epochs, 1...Check.maxIterations, "--epochs")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        try Check.finite(lr, 0...1e6, "--lr", openLower: true)
        try Check.finite(momentum, 0...1, "--momentum")
        try Check.finite(l2, 0...1e6, "--l2")
        try correction.validateOne()
    }

    /// The bends file of each curve: --out itself for two models, STEM-k.EXT for a chain.
    var outputs: [String] {
        guard models.count > 2 else { return [out] }
        let url = URL(fileURLWithPath: out)
        let ext = url.pathExtension.isEmpty ? "safetensors" : url.pathExtension
        let stem = url.deletingPathExtension().path
        return (1..<models.count).map { "\(stem)-\($0).\(ext)" }
    }

    struct Segment: Encodable {
        var from: String
        var to: String
        var out: String
        var epochLosses: [Double]
        var metrics: PathMetrics?
    }

    struct Report: Encodable {
        var type: PathType
        var bends: Int
        var models: [String]
        var segments: [Segment]
        var evaluation: Evaluation?
    }

    /// The fitted curves and the straight chain end to end: curve k covers t in [k, k + 1].
    struct Evaluation: Encodable {
        var data: String
        /// What was done to each point before it was evaluated: naive, bn_reset or repair.
        var correction: String
        var fitted: [PathPoint]
        var linear: [PathPoint]
        /// The largest Eq. 1 loss barrier of any curve / any straight segment.
        var fittedBarrier: Double
        var linearBarrier: Double
    }

    func run() throws {
        nonFinite.apply()
        var io = IOPlan()
        try io.models(models)
        try io.files([data])
        try io.file(initBends)
        try io.file(test)
        try io.file(arch.archFile)
        try io.file(correction.bnReset)
        try io.file(correction.repair)
        for o in outputs { io.output(o) }
        output.plan(&io)
        try io.check()
        let inputs = io.inputs
        let loaded = try loadCompatible(models, arch: arch)
        let bad = loaded.map { warnNonFinite($0) }.contains(true)
        try refuseNonFinite(bad, models.count > 2 ? "the models" : "the endpoints")
        let train = try Dataset(path: data)
        try LoadedModel.check(train, fits: loaded[0])
        let testData = try test.map { try Dataset(path: $0) }
        if let testData { try LoadedModel.check(testData, fits: loaded[0]) }
        try MemoryBudget.check(MemoryBudget.product(loaded[0].params.scalarCount, bends + 2, 4, 4),
                               for: "a curve with \(bends) bend(s) of \(loaded[0].params.scalarCount) parameters")
        let shas = try loaded.map { try FileDigest.sha256(of: $0.source) }
        // Checked before fitting (the network has BatchNorm or REPAIR sites, the data fits); used by the report.
        let pointCorrection = try correction.make(for: loaded[0]) ?? .none

        var config = CurveFitConfig(type: type, bends: bends, epochs: epochs, learningRate: lr, batchSize: batch, seed: seed)
        config.optimizer = optimizer
        config.schedule = schedule
        config.momentum = momentum
        config.l2 = l2
        let showProgress = !quiet && output.text
        let terminal = standardErrorIsTerminal
        var segments: [Segment] = []
        var paths: [ModelPath] = []
        for s in 0..<(models.count - 1) {
            let a = loaded[s], b = loaded[s + 1]
            let fitter: CurveFitter
            if let initBends {
                let url = URL(fileURLWithPath: initBends)
                let file = try BendsFile.read(url, like: a.params)
                try BendsFile.checkEndpoints(file, file: url, startSHA256: shas[0], endSHA256: shas[1])
                guard file.type == type, file.bends.count == bends else {
                    throw ValidationError("\(initBends) holds \(file.bends.count) \(file.type.rawValue) bend(s); asked for \(bends) \(type.rawValue)")
                }
                fitter = try CurveFitter(network: a.network, path: .withBends(type, from: a.params, to: b.params, bends: file.bends),
                                         data: train, config: config)
            } else {
                fitter = try CurveFitter(network: a.network, start: a.params, end: b.params, data: train, config: config)
            }
            let prefix = models.count > 2 ? "curve \(s + 1)/\(models.count - 1) " : ""
            var lastDraw = 0.0
            let result = fitter.fit { p in
                guard showProgress else { return }
                if terminal {
                    let now = Benchmarks.now()
                    guard p.endOfEpoch || now - lastDraw > 0.1 else { return }
                    lastDraw = now
                    let width = 30
                    let filled = Int((p.fraction * Double(width)).rounded(.down))
                    let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                    var line = String(format: "\r\u{1B}[K%@[%@] epoch %d/%d  batch %d/%d  loss %.5f", prefix, bar, p.epoch, p.epochs,
                                      p.batch, p.batches, p.meanLoss)
                    if p.endOfEpoch && p.epoch == p.epochs { line += "\n" }
                    FileHandle.standardError.write(Data(line.utf8))
                } else if p.endOfEpoch {
                    printError(String(format: "%@epoch %3d/%d  mean loss %.5f", prefix, p.epoch, p.epochs, p.meanLoss))
                }
            }
            let metadata = [BendsFile.fitKey: "optimizer=\(optimizer.rawValue) lr=\(lr) schedule=\(schedule.rawValue) epochs=\(epochs) batch=\(batch) seed=\(seed) l2=\(l2) data=\(URL(fileURLWithPath: data).lastPathComponent)"
                            + (initBends.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")]
            try BendsFile.write(result.path, to: URL(fileURLWithPath: outputs[s]), startSHA256: shas[s], endSHA256: shas[s + 1],
                                extraMetadata: metadata, modelDTypes: loaded[s].dtypes, protecting: inputs)
            if output.text {
                print("wrote \(outputs[s]): \(bends) \(type.rawValue) bend(s)"
                      + (models.count > 2 ? " \(models[s]) -> \(models[s + 1])" : "") + ", final epoch mean loss "
                      + String(format: "%.5f", result.epochLosses.last ?? .nan))
            }
            paths.append(result.path)
            segments.append(Segment(from: models[s], to: models[s + 1], out: outputs[s], epochLosses: result.epochLosses, metrics: nil))
        }

        // Evaluation: asked for with --test, or needed by --json, --csv and --svg (on the training set without --test).
        guard testData != nil || !output.text || output.svg != nil else { return }
        let evalData = testData ?? train
        let network = loaded[0].network
        var fitted: [PathPoint] = [], linear: [PathPoint] = []
        var fittedBarrier = -Double.infinity, linearBarrier = -Double.infinity
        for (s, path) in paths.enumerated() {
            let m = PathEvaluator(path: path, network: network, datasets: [evalData], correction: pointCorrection).metrics(points: points)![0]
            let l = PathEvaluator(path: try .linear(loaded[s].params, loaded[s + 1].params), network: network, datasets: [evalData],
                                  correction: pointCorrection).metrics(points: points)![0]
            segments[s].metrics = m
            fittedBarrier = max(fittedBarrier, m.barrier.loss)
            linearBarrier = max(linearBarrier, l.barrier.loss)
            // End to end: curve s covers [s, s + 1]; the model at each joint appears once.
            for (p, q) in zip(m.points, l.points) where s == 0 || p.t > 0 {
                fitted.append(PathPoint(t: Double(s) + p.t, loss: p.loss, accuracy: p.accuracy))
                linear.append(PathPoint(t: Double(s) + q.t, loss: q.loss, accuracy: q.accuracy))
            }
        }
        let evaluation = Evaluation(data: evalData.name, correction: pointCorrection.name, fitted: fitted, linear: linear, fittedBarrier: fittedBarrier, linearBarrier: linearBarrier)
        let chain = models.count > 2
        let figure = Figure(title: "\(evalData.name) loss along the fitted \(type.rawValue) \(chain ? "chain" : "curve") and the straight \(chain ? "chain" : "line")",
                            valueLabel: "\(evalData.name) loss", xLabel: chain ? "position along the chain (model k at k)" : "t",
                            body: .lines(series: [FigureSeries(name: "fitted \(type.rawValue)", points: fitted.map { (x: $0.t, y: $0.loss) }),
                                                  FigureSeries(name: chain ? "straight chain" : "straight line", points: linear.map { (x: $0.t, y: $0.loss) })],
                                         marks: models.map(shortName).enumerated().map { FigureAnchor(x: Double($0.offset), y: 0, label: $0.element) }))
        if output.json {
            try printJSON(Report(type: type, bends: bends, models: models, segments: segments, evaluation: evaluation))
        } else if output.csv {
            print("curve,t,loss,accuracy")
            for p in fitted { print("fitted,\(p.t),\(p.loss),\(p.accuracy)") }
            for p in linear { print("linear,\(p.t),\(p.loss),\(p.accuracy)") }
        } else {
            if case .none = pointCorrection {} else { print("every point: \(correction.describe), before evaluation") }
            for seg in segments {
                guard let m = seg.metrics else { continue }
                print(String(format: "%@%@: loss barrier %.5f, max loss %.5f, min accuracy %.4f",
                             chain ? "\(shortName(seg.from)) -> \(shortName(seg.to)) on " : "", m.data, m.barrier.loss,
                             m.lossSummary.max, m.accuracySummary.min))
            }
            if chain {
                print(String(format: "whole chain on %@: largest loss barrier %.5f fitted, %.5f straight", evalData.name,
                             fittedBarrier, linearBarrier))
            }
            if output.svg != nil { print(figure.text()) }
        }
        try output.writeSVG(figure, inputs: inputs)
    }
}
extension LearningRateSchedule: ExpressibleByArgument {}
