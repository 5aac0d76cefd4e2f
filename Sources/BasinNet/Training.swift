import BasinIO
import BasinTensor
import Foundation

/// Minibatch training of a network on a data set: seeded, so the same settings give the same bits.
public struct TrainingConfig: Sendable {
    public var optimizer: OptimizerKind = .adam
    public var learningRate: Float = 1e-3
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var epochs: Int = 10
    public var batchSize: Int = 64
    public var seed: UInt64 = 0
    /// Adam/AdamW's second-moment decay (transformer recipes often use 0.98).
    public var beta2: Float = 0.999
    /// A learning-rate schedule over the run's steps: linear warmup from 0 over `warmupSteps`, then constant,
    /// then a linear decay to 0 over the last `decaySteps` (none when both are 0).
    public var warmupSteps = 0
    public var decaySteps = 0

    public init() {}
}

public struct EpochReport: Sendable {
    public var epoch: Int
    public var meanLoss: Double
    public var accuracy: Double
}

public enum Trainer {
    /// PyTorch's default nn.Linear initialisation for a chain of linear layers of widths `sizes`: weight
    /// and bias uniform in +-1/sqrt(fan_in).
    public static func initialise(_ architecture: Architecture, sizes: [Int], generator: inout SeededGenerator) -> ParameterSet {
        var params = ParameterSet()
        for (i, node) in architecture.linearNodes.enumerated() {
            let linear = architecture.nodes[node].op as! Linear
            for (name, t) in Linear.initialise(weight: linear.weight, bias: linear.bias, fanIn: sizes[i], fanOut: sizes[i + 1], generator: &generator) {
                params[name] = t
            }
        }
        return params
    }

    /// Trains `params` in place (the trained parameters by the optimiser, buffers such as BatchNorm's
    /// running statistics by the train-mode forward); calls `progress` after each epoch and `checkpoint`
    /// with the epoch number and the parameters after it.
    public static func train(network: Network, params: inout ParameterSet, data: Dataset, config: TrainingConfig,
                             progress: (EpochReport) -> Void = { _ in },
                             checkpoint: (Int, ParameterSet) throws -> Void = { _, _ in }) rethrows {
        var generator = SeededGenerator(seed: config.seed)
        var optimizer = config.optimizer.make(learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay,
                                              beta2: config.beta2)
        let stepsPerEpoch = (data.count + config.batchSize - 1) / max(1, config.batchSize)
        let schedule = config.warmupSteps > 0 || config.decaySteps > 0
            ? WarmupDecaySchedule(peak: config.learningRate, totalSteps: stepsPerEpoch * max(1, config.epochs),
                                  warmupSteps: config.warmupSteps, decaySteps: config.decaySteps)
            : nil
        var stepIndex = 0
        let trained = Set(network.architecture.trainedParameterNames)
        let names = params.names.filter { trained.contains($0) }
        let totalPositions = max(1, data.y.reduce(0) { $0 + ($1 == Dataset.ignored ? 0 : 1) })
        for epoch in 1...max(1, config.epochs) {
            let order = generator.permutation(data.count)
            var lossSum = 0.0, correct = 0.0
            var start = 0
            while start < data.count {
                let idx = Array(order[start..<min(data.count, start + config.batchSize)])
                let xb = data.x.gatherRows(idx)
                let yb = data.labels(at: idx)
                let step = network.step(params, x: xb, y: yb)
                let positions = Double(yb.reduce(0) { $0 + ($1 == Dataset.ignored ? 0 : 1) })
                lossSum += step.metrics.loss * positions
                correct += step.metrics.accuracy * positions
                if let schedule { optimizer.learningRate = schedule.rate(at: stepIndex) }
                stepIndex += 1
                var tensors = names.map { params[$0]! }
                optimizer.step(&tensors, gradients: names.map { step.gradients[$0] ?? Tensor.zeros(like: params[$0]!) })
                for (n, t) in zip(names, tensors) { params[n] = t }
                for (n, t) in step.bufferUpdates { params[n] = t }
                start += config.batchSize
            }
            progress(EpochReport(epoch: epoch, meanLoss: lossSum / Double(totalPositions), accuracy: correct / Double(totalPositions)))
            try checkpoint(epoch, params)
        }
    }
}

extension Trainer {
    /// Recomputes every BatchNorm's running statistics as `torch.optim.swa_utils.update_bn` does: statistics
    /// reset (mean 0, variance 1, no batches), then one train-mode pass over `data` in order, in batches of
    /// `batchSize` (the last one kept, however small), each BatchNorm's running mean and variance ending as the
    /// plain average over the batches of the batch mean and unbiased variance, and num_batches_tracked as the
    /// number of batches. Trained parameters are unchanged.
    public static func resetBatchNormStatistics(network: Network, params: ParameterSet, data: Dataset, batchSize: Int = 64) -> ParameterSet {
        let norms = network.architecture.nodes.compactMap { $0.op as? BatchNorm }
        var p = params
        // With no batches tracked, a cumulative update replaces the statistics by the batch's own.
        for bn in norms {
            guard let c = p[bn.runningMean]?.count else { continue }
            p[bn.runningMean] = Tensor(shape: [c], repeating: 0)
            p[bn.runningVar] = Tensor(shape: [c], repeating: 1)
            if let n = bn.numBatchesTracked, let t = p[n] { p[n] = Tensor(shape: t.shape, repeating: 0) }
        }
        var sums: [String: [Double]] = [:]
        var batches = 0
        var start = 0
        let size = max(1, batchSize)
        while start < data.count {
            let end = min(data.count, start + size)
            let trace = network.run(data.x.rows(start..<end), p, Network.RunOptions(mode: .train, cumulativeStatistics: true))
            let statistics = Set(norms.flatMap { [$0.runningMean, $0.runningVar] })
            for (name, t) in trace.bufferUpdates where statistics.contains(name) {
                if sums[name] == nil { sums[name] = [Double](repeating: 0, count: t.count) }
                for k in 0..<t.count { sums[name]![k] += Double(t[k]) }
            }
            batches += 1
            start = end
        }
        guard batches > 0 else { return p }
        for (name, s) in sums { p[name] = Tensor(shape: [s.count], storage: s.map { Float($0 / Double(batches)) }) }
        for bn in norms {
            if let n = bn.numBatchesTracked, let t = p[n] { p[n] = Tensor(shape: t.shape, repeating: Float(batches)) }
        }
        return p
    }
}
