import FoundationEssentials

/// Notices another agent that insists on standing above NodeGuard's jump in
/// a hook chain, and paces NodeGuard's side so the two do not rewrite the
/// table forever.
///
/// A displacement is a full read that found, above NodeGuard's jump, a
/// foreign rule that could let a blocked packet through (`BypassCheck`;
/// harmless rules never count). When the same rule (by `ObservedRule.identity`,
/// not by how it looks) displaces the jump at the same hook site `threshold`
/// times within `window`, a fight starts there: NodeGuard stops moving its
/// jump back at that site only (it may stay below the other rule), and tries
/// to retake the site after a backoff that doubles each time the other agent
/// pushes it down again. Holding the site for a whole backoff period ends the
/// fight. A fight in mangle makes the engine hold the ports closed from the
/// raw table; a fight over that hold (in raw) is detected and backed off the
/// same way. Pure logic: the caller passes the time.
public struct FightTracker: Sendable {
    public struct Displacement: Sendable, Hashable {
        public var site: HookSite
        /// `ObservedRule.identity` of the rule above the jump.
        public var identity: UInt64
        /// The rule as an operator knows it (iptables-save's text where known).
        public var culprit: String

        public init(site: HookSite, identity: UInt64, culprit: String) {
            self.site = site
            self.identity = identity
            self.culprit = culprit
        }

        /// Who displaced NodeGuard where; the culprit's text does not count.
        struct Key: Hashable {
            var site: HookSite
            var identity: UInt64
        }
        var key: Key { Key(site: site, identity: identity) }
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
    /// Distinct displacements remembered at once: one-off rules by the
    /// thousand must not grow the daemon.
    public static let memoryLimit = 256

    /// The fights going on, by the site disputed.
    public private(set) var fights: [HookSite: Fight] = [:]
    private var seen: [Displacement.Key: [ContinuousClock.Instant]] = [:]

    public init() {}

    /// The sites where NodeGuard leaves its jump where it is in this full read.
    public func yielding(at now: ContinuousClock.Instant) -> Set<HookSite> {
        Set(fights.filter { now < $0.value.retakeAt }.keys)
    }

    /// Whether a full read is due for a fight's sake alone: to retake a site
    /// whose backoff has passed, or to end a fight held for a whole backoff.
    /// Nothing in the tables need change for either.
    public func needsRead(at now: ContinuousClock.Instant) -> Bool {
        fights.values.contains { fight in
            if let retook = fight.retookAt { return now - retook >= fight.backoff }
            return now >= fight.retakeAt
        }
    }

    /// Whether the ports must be held closed from raw: mangle is disputed.
    public var holding: Bool { fights.keys.contains { $0.table == "mangle" } }

    /// The fights, mangle first, then by site.
    public var ordered: [Fight] {
        func order(_ fight: Fight) -> (Int, String) {
            (fight.displacement.site.table == "mangle" ? 0 : 1, fight.displacement.site.description)
        }
        return fights.values.sorted { order($0) < order($1) }
    }

    /// Names the culprit of the fight at `site` better (see `CulpritNames`).
    public mutating func rename(_ site: HookSite, culprit: String) {
        fights[site]?.displacement.culprit = culprit
    }

    /// Ends each fight whose site NodeGuard has held for a whole backoff period.
    public mutating func tick(at now: ContinuousClock.Instant) -> [Event] {
        var events: [Event] = []
        for (site, fight) in fights {
            guard let retook = fight.retookAt, now - retook >= fight.backoff else { continue }
            fights[site] = nil
            seen[fight.displacement.key] = nil
            events.append(.ended(fight))
        }
        return events
    }

    /// Records what one full read found. `yielded` are the sites that read
    /// was not allowed to move the jump back at (see `yielding`).
    public mutating func observe(_ displacements: [Displacement], at now: ContinuousClock.Instant,
                                 date: Date = Date(), yielded: Set<HookSite>) -> [Event] {
        var events: [Event] = []
        for (site, var fight) in fights where !yielded.contains(site) {
            guard fight.retookAt != nil else {
                // This read is the retake itself: the other rule was above
                // NodeGuard's jump only because NodeGuard had yielded.
                fight.retookAt = now
                fights[site] = fight
                continue
            }
            guard displacements.contains(where: { $0.key == fight.displacement.key }) else { continue }
            fight.displacements += 1
            fight.backoff = min(fight.backoff * 2, Self.maximumBackoff)
            fight.retakeAt = now + fight.backoff
            fight.retookAt = nil
            fights[site] = fight
            events.append(.continued(fight))
        }
        for displacement in displacements where fights[displacement.site] == nil {
            var times = (seen[displacement.key] ?? []).filter { now - $0 < Self.window }
            times.append(now)
            seen[displacement.key] = times
            if times.count >= Self.threshold {
                let started = Fight(displacement: displacement, displacements: times.count, since: date,
                                    backoff: Self.firstBackoff, retakeAt: now + Self.firstBackoff, retookAt: nil)
                fights[displacement.site] = started
                events.append(.started(started))
            }
        }
        if seen.count > Self.memoryLimit {
            seen = seen.filter { _, times in times.contains { now - $0 < Self.window } }
            if seen.count > Self.memoryLimit { seen = [:] }
        }
        return events
    }
}
