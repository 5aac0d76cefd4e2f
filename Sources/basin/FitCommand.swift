import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Fit a low-loss polychain or Bezier curve between two models (Garipov et al. 2018): endpoints fixed, bends trained on E_t~U(0,1) L(phi(t)), written as safetensors.")

    @Argument(help: "Start model (w_A).")
    var modelA: String

    @Argument(help: "End model (w_B).")
    var modelB: String

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

    @Option(help: "After fitting, report the barrier on this data set (25 points).")
    var test: String?

    @OptionGroup var arch: ArchitectureOptions

    @Option(help: "Output bends file (.safetensors).")
    var out: String

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var nonFinite: NonFiniteOptions

    func validate() throws {
        guard type != .linear else { throw ValidationError("--type must be bezier or polychain (a linear path has nothing to fit)") }
        try Check.range(bends, 1...64, "--bends")
        try Check.range(epochs, 1...Check.maxIterations, "--epochs")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        try Check.finite(lr, 0...1e6, "--lr", openLower: true)
        try Check.finite(momentum, 0...1, "--momentum")
        try Check.finite(l2, 0...1e6, "--l2")
    }

    func run() throws {
        nonFinite.apply()
        var io = IOPlan()
        try io.models([modelA, modelB])
        try io.files([data])
        try io.file(initBends)
        try io.file(test)
        try io.file(arch.archFile)
        io.output(out)
        try io.check()
        let a = try arch.load(modelA)
        let b = try arch.load(modelB)
        let badA = warnNonFinite(a), badB = warnNonFinite(b)
        try refuseNonFinite(badA || badB, "the endpoints")
        try a.params.checkCompatible(with: b.params, "\(a.path) and \(b.path)")
        guard a.architecture == b.architecture else { throw ValidationError("\(modelB) has a different architecture from \(modelA)") }
        let train = try Dataset(path: data)
        try LoadedModel.check(train, fits: a)
        let testData = try test.map { try Dataset(path: $0) }
        if let testData { try LoadedModel.check(testData, fits: a) }
        try MemoryBudget.check(MemoryBudget.product(a.params.scalarCount, bends + 2, 4, 4), for: "a curve with \(bends) bend(s) of \(a.params.scalarCount) parameters")
        let outURL = URL(fileURLWithPath: out)
        let shaA = try FileDigest.sha256(of: a.source), shaB = try FileDigest.sha256(of: b.source)

        var config = CurveFitConfig(type: type, bends: bends, epochs: epochs, learningRate: lr, batchSize: batch, seed: seed)
        config.optimizer = optimizer
        config.schedule = schedule
        config.momentum = momentum
        config.l2 = l2
        let fitter: CurveFitter
        if let initBends {
            let url = URL(fileURLWithPath: initBends)
            let loaded = try BendsFile.read(url, like: a.params)
            try BendsFile.checkEndpoints(loaded, file: url, startSHA256: shaA, endSHA256: shaB)
            guard loaded.type == type, loaded.bends.count == bends else {
                throw ValidationError("\(initBends) holds \(loaded.bends.count) \(loaded.type.rawValue) bend(s); asked for \(bends) \(type.rawValue)")
            }
            fitter = try CurveFitter(network: a.network, path: .withBends(type, from: a.params, to: b.params, bends: loaded.bends),
                                     data: train, config: config)
        } else {
            fitter = try CurveFitter(network: a.network, start: a.params, end: b.params, data: train, config: config)
        }

        let terminal = standardErrorIsTerminal
        var lastDraw = 0.0
        let result = fitter.fit { p in
            guard !quiet else { return }
            if terminal {
                let now = Benchmarks.now()
                guard p.endOfEpoch || now - lastDraw > 0.1 else { return }
                lastDraw = now
                let width = 30
                let filled = Int((p.fraction * Double(width)).rounded(.down))
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                var line = String(format: "\r\u{1B}[K[%@] epoch %d/%d  batch %d/%d  loss %.5f", bar, p.epoch, p.epochs, p.batch, p.batches, p.meanLoss)
                if p.endOfEpoch && p.epoch == p.epochs { line += "\n" }
                FileHandle.standardError.write(Data(line.utf8))
            } else if p.endOfEpoch {
                printError(String(format: "epoch %3d/%d  mean loss %.5f", p.epoch, p.epochs, p.meanLoss))
            }
        }
        let metadata = [BendsFile.fitKey: "optimizer=\(optimizer.rawValue) lr=\(lr) schedule=\(schedule.rawValue) epochs=\(epochs) batch=\(batch) seed=\(seed) l2=\(l2) data=\(URL(fileURLWithPath: data).lastPathComponent)"
                        + (initBends.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")]
        try BendsFile.write(result.path, to: outURL, startSHA256: shaA, endSHA256: shaB, extraMetadata: metadata,
                            protecting: a.source.files + b.source.files)
        print("wrote \(out): \(bends) \(type.rawValue) bend(s), final epoch mean loss "
              + String(format: "%.5f", result.epochLosses.last ?? .nan))
        if let testData {
            let m = PathEvaluator(path: result.path, network: a.network, datasets: [testData]).metrics(points: 25)![0]
            print(String(format: "%@: loss barrier %.5f, max loss %.5f, min accuracy %.4f", testData.name, m.barrier.loss,
                         m.lossSummary.max, m.accuracySummary.min))
        }
    }
}
extension LearningRateSchedule: ExpressibleByArgument {}
