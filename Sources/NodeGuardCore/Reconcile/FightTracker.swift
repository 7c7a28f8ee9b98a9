import FoundationEssentials

/// Notices another agent that insists on rule 1 of a hook chain as NodeGuard
/// does, and paces NodeGuard's side so the two do not rewrite the table
/// forever.
///
/// A displacement is a full read that found a foreign rule above NodeGuard's
/// jump. When the same rule displaces it `threshold` times within `window`,
/// a fight starts: NodeGuard stops moving its jump back (it may stay below the
/// other rule), holds the blocked ports closed from the raw table, which runs
/// before mangle, and tries to retake rule 1 after a backoff that doubles each
/// time the other agent pushes it down again. Holding rule 1 for a whole
/// backoff period ends the fight. Pure logic: the caller passes the time.
public struct FightTracker: Sendable {
    public struct Displacement: Sendable, Hashable {
        /// The foreign rule that was rule 1, as iptables-save prints it.
        public var culprit: String
        public var family: AddressFamily
        public var chain: String

        public init(culprit: String, family: AddressFamily, chain: String) {
            self.culprit = culprit
            self.family = family
            self.chain = chain
        }
    }

    public struct Fight: Sendable {
        public var displacement: Displacement
        public var displacements: Int
        public var since: Date
        public var backoff: Duration
        /// When NodeGuard next puts its jump back on top.
        public var retakeAt: ContinuousClock.Instant
        /// When it last did (nil until the first retake).
        public var retookAt: ContinuousClock.Instant?
    }

    public enum Event: Sendable {
        case started(Fight)
        /// Pushed down again after a retake: the backoff doubled.
        case continued(Fight)
        case ended(Fight)
    }

    public static let threshold = 3
    public static let window: Duration = .seconds(900)
    public static let firstBackoff: Duration = .seconds(30)
    public static let maximumBackoff: Duration = .seconds(1800)

    public private(set) var fight: Fight?
    private var seen: [Displacement: [ContinuousClock.Instant]] = [:]

    public init() {}

    /// Whether NodeGuard must put its jump back on top in this full read.
    public func hookMustBeFirst(at now: ContinuousClock.Instant) -> Bool {
        guard let fight else { return true }
        return now >= fight.retakeAt
    }

    public var holding: Bool { fight != nil }

    /// Ends the fight if NodeGuard has held rule 1 for a whole backoff period.
    public mutating func tick(at now: ContinuousClock.Instant) -> Event? {
        guard let current = fight, let retook = current.retookAt, now - retook >= current.backoff else { return nil }
        fight = nil
        seen[current.displacement] = nil
        return .ended(current)
    }

    /// Records what one full read found. `hookWasFirst` says whether that
    /// read was allowed to move the jump back (see `hookMustBeFirst`).
    public mutating func observe(_ displacements: [Displacement], at now: ContinuousClock.Instant,
                                 date: Date = Date(), hookWasFirst: Bool) -> Event? {
        if var current = fight {
            // While yielding, the jump was not moved: nothing to learn.
            guard hookWasFirst else { return nil }
            guard current.retookAt != nil else {
                // This read is the retake itself: the other rule was above
                // NodeGuard's jump only because NodeGuard had yielded.
                current.retookAt = now
                fight = current
                return nil
            }
            guard displacements.contains(current.displacement) else { return nil }
            current.displacements += 1
            current.backoff = min(current.backoff * 2, Self.maximumBackoff)
            current.retakeAt = now + current.backoff
            current.retookAt = nil
            fight = current
            return .continued(current)
        }
        var event: Event?
        for displacement in displacements {
            var times = (seen[displacement] ?? []).filter { now - $0 < Self.window }
            times.append(now)
            seen[displacement] = times
            if event == nil && times.count >= Self.threshold {
                let started = Fight(displacement: displacement, displacements: times.count, since: date,
                                    backoff: Self.firstBackoff, retakeAt: now + Self.firstBackoff, retookAt: nil)
                fight = started
                event = .started(started)
            }
        }
        return event
    }
}
