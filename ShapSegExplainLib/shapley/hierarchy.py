"""Coarse-to-fine Shapley values over a tree of nested players.

The coarse game is played by the tree's roots. Then, one at a time, a player that has
children is *refined* (which one: below): its children play the game in which every
other player is present (the image as it is), w_p(T) = v(T ∪ (N ∖ p)), T ⊆ children(p),
whose total is p's marginal m_p = v(N) − v(N ∖ p), and they share the parent's value φ_p:

* ``proportional`` (the default): φ_c = Sh_c(w_p) · φ_p / m_p. The target is the **Owen
  value** of the tree's coalition structure: a child's Shapley value in p's game averaged
  over the coalitions R of the other players, v(R ∪ T) − v(R). Only R = N ∖ p is played;
  when p's effect scales with its context, v(R ∪ T) − v(R) = b(R)·h(T), the average is
  Sh_c(h)·E[b] and the rule is exact (tested). A kidney is the case: its pieces matter
  only while the context that makes it a kidney is there, so φ_p is a fraction of m_p and
  every piece keeps its share of it.
* ``equal``: the **two-step Shapley value** (Kamijo 2009, with the other players present
  rather than absent), φ_c = Sh_c(w_p) + (φ_p − m_p) / n: the Owen value when p interacts
  with the others only as a whole, v(R ∪ T) − v(R) = h(T) + g(R)·[T = children(p)]. On
  the kidney it hands every piece the same large negative surplus, so weak pieces turn
  negative (bench_cost: kidney box; on the recorded real games it is 20× further from the
  Owen value than the proportional split, ``Testing/shapley/test_recorded_games.py``).

Either way the children of a refined player sum to its value exactly at every level, a
player left whole keeps its value, and on an additive game every level gives the flat
game's Shapley values. The proportional rule applies where φ_p and m_p have the same sign
and φ_p / m_p ≤ ``MAX_SCALE``. Elsewhere the image as it is carries little of p's value (or
the opposite of it), so w_p only says how the children share m_p, and the equal split hands
each of them the same (φ_p − m_p)/n: a split by count, bought with a whole game. Under the
proportional split such a player is therefore **left whole** (``TreeResult.left_whole``): m_p
is read before p's game is played, from v(N ∖ p). The game p played in has evaluated it
(the GP's first design and an enumeration hold sizes 1 and M − 1) and the tile memo keeps it,
so the check costs no forward; else it costs the one coalition p's own game starts with
(w_p(∅) = v(N ∖ p)). bench_cost, kidney edge: the spleen, φ_p / m_p = 507, whose six pieces
all came out 0.0167, cost 48 of the 298 tile forwards to the answer.
Only the tiles that p touches change in w_p, so the tile memo answers the rest; that is
what makes a refinement cheap.

Which player is refined next: among those carrying ≥ ``min_share`` of Σ|φ|, the one with
the largest |φ|·volume when node volumes are given (the default run), else the largest |φ|.
A player's inner ordering is unknown until it is refined, so a deletion or insertion curve
over the removed volume can be off by up to about |φ|·volume inside it (the area of the
block it removes at once); the largest such block is refined first. A large tissue player of
modest φ is then split before a small one of slightly larger φ, which is what the curves in
mL and the reader both need (bench_cost: kidney box).

Refinement stops when no refinable player (one with children, not left whole) carries
``min_share`` of Σ|φ| of the current players, after ``max_refinements``, or when ``stop``
(time limit, forward budget) says so; the result is complete at every point: the current
players partition the support and their values sum to v(N) − v(∅).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .estimator import Game, ShapleyResult, shapley_values
from .proxy import residual_design, with_proxy

MAX_SCALE = 4.0            # the proportional split only where φ_p / m_p ≤ this (``split_value``)
EXACT_ROOT_FORWARDS = 300   # the coarse game is enumerated when that costs at most this many tile forwards (tuning split)
SUMMED_SE = 0.20            # ... else sampled, its budget doubled until ΣSE and the summed change since the half budget are ≤ this share of Σ|φ| (tuning split)
CHANGE_SE = 0.35            # a doubled answer reports SE ≥ this share of each player's change (decisions use all of it; tuning split)
EXACT_CHILDREN = 5          # a refinement enumerates every coalition of up to this many children
BUDGET_PER_CHILD = 4        # ... and samples this many coalitions per child beyond it (GP estimator)


def level_budget(n: int, per_player: int = BUDGET_PER_CHILD) -> int:
    """Coalitions for a game of ``n`` players in the tree: all 2^n up to ``EXACT_CHILDREN``,
    else ``per_player``·n (at least KernelSHAP's 2n + 2)."""
    return 2 ** n if n <= EXACT_CHILDREN else max(per_player * n, 2 * n + 2)


@dataclass
class TreeResult:
    """The current players (tree nodes) with their values, and how they were reached."""
    nodes: list[int]
    values: np.ndarray
    se: np.ndarray
    base_value: float
    full_value: float
    refined: list[int] = field(default_factory=list)
    games: list[ShapleyResult] = field(default_factory=list)
    game_nodes: list[list[int]] = field(default_factory=list)     # the players of each game
    scales: list[float | None] = field(default_factory=list)      # per refinement: φ_p / m_p, or None (equal split)
    left_whole: dict[int, float] = field(default_factory=dict)    # node -> its m_p, where it carries too little of φ_p
    stop_reason: str = "refined"

    @property
    def n_evaluations(self) -> int:
        return sum(g.n_evaluations for g in self.games)

    @property
    def proxy_evaluations(self) -> int:
        return sum(g.proxy_evaluations for g in self.games)

    def atom_coalitions(self, tree) -> np.ndarray:
        """Every evaluated coalition of every game as the atoms present (the audit's rows)."""
        rows = [~((~g.coalitions).astype(np.int32) @ tree.membership(nodes).astype(np.int32) > 0)
                for g, nodes in zip(self.games, self.game_nodes)]
        return np.concatenate(rows) if rows else np.zeros((0, tree.n_atoms), bool)


def node_game(atom_game: Game, membership: np.ndarray) -> Game:
    """A game over some nodes: an absent node's atoms are absent, every other atom present."""
    def game(coalitions: np.ndarray) -> np.ndarray:
        return atom_game(atoms_present(coalitions, membership))
    return game


def atoms_present(coalitions: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Node coalitions (k, nodes) or (nodes,) -> the atoms present."""
    absent = (~np.asarray(coalitions, bool)).astype(np.int32) @ membership.astype(np.int32) > 0
    return ~absent


@dataclass
class AtomGames:
    """What every level plays, over the atoms: the game, and optionally a cheap proxy of it
    (``shapley.proxy``) and the cost of a coalition, ``cost(atoms, proxy)`` (cost-aware draws)."""
    game: Game
    proxy: Game | None = None
    cost: Callable[[np.ndarray, bool], set] | None = None
    residual_budget: int | None = None      # the proxy's exact coalitions per game (None: 2M + 2)
    enumeration: Callable[[np.ndarray], int] | None = None   # tile forwards to enumerate a node game (memo)

    def play(self, membership: np.ndarray, n: int, budget: int, seed: int, stop, kwargs: dict,
             residual: int | None = None) -> ShapleyResult:
        """The Shapley values of the game over the nodes of ``membership`` (``residual``: the
        proxy's exact coalitions this time, instead of ``residual_budget``)."""
        game = node_game(self.game, membership)
        if self.cost is not None:
            kwargs = dict(kwargs, cost=self._node_cost(membership, False))
        if self.proxy is None:
            return shapley_values(game, n, budget, seed=seed, stop=stop, **kwargs)
        proxy_cost = self._node_cost(membership, True) if self.cost is not None else None
        return with_proxy(game, node_game(self.proxy, membership), n, budget, residual or self.residual_budget,
                          proxy_cost=proxy_cost, seed=seed,
                          stop=stop, **kwargs)

    def _node_cost(self, membership: np.ndarray, proxy: bool):
        return lambda c: self.cost(atoms_present(c, membership), proxy)


def tree_shapley(atom_game: Game | AtomGames, tree, *, seed: int = 0, max_refinements: int = 6, min_share: float = 0.03,
                 stop: Callable[[], str | None] | None = None, on_level: Callable[[TreeResult], None] | None = None,
                 root_budget: int | None = None, per_child: int = BUDGET_PER_CHILD, volumes: np.ndarray | None = None,
                 split: str = "proportional", exact_forwards: int = EXACT_ROOT_FORWARDS,
                 namable: np.ndarray | None = None, **kwargs) -> TreeResult:
    """Coarse game over ``tree.roots()``, then refinements (see the module docstring).
    ``tree``: a ``players.levels.Tree``. ``kwargs`` go to ``shapley_values`` (estimator,
    threshold, batch_size, on_batch, ...); ``on_level`` gets the result after every level.
    ``atom_game`` may carry a proxy and a cost (``AtomGames``); ``volumes``: per tree node
    (any unit), to refine by |φ|·volume; ``exact_forwards`` and ``namable`` (which roots may be
    named as drivers): ``coarse_game``."""
    games = atom_game if isinstance(atom_game, AtomGames) else AtomGames(atom_game)
    stop = stop or (lambda: None)
    roots = tree.roots()
    first = coarse_game(games, tree.membership(roots), root_budget or level_budget(len(roots), per_child), seed, stop,
                        kwargs, exact_forwards, namable)
    res = TreeResult(nodes=list(roots), values=first.values.copy(), se=first.se.copy(), base_value=first.base_value,
                     full_value=first.full_value, games=[first], game_nodes=[list(roots)])
    if on_level:
        on_level(res)
    while True:
        reason = stop() or _next_reason(res, tree, max_refinements, min_share)
        if reason:
            res.stop_reason = reason
            return res
        pos = _pick(res, tree, min_share, volumes)
        if split == "proportional":
            marginal = res.full_value - _without(res, pos, tree, games)
            if proportional_scale(res.values[pos], marginal) is None:
                res.left_whole[res.nodes[pos]] = marginal
                continue
        refine(res, tree, pos, games, seed, stop, per_child, kwargs, split)
        if on_level:
            on_level(res)


def coarse_game(games: AtomGames, membership: np.ndarray, budget: int, seed: int, stop, kwargs: dict,
                exact_forwards: int = EXACT_ROOT_FORWARDS, namable: np.ndarray | None = None,
                tolerance: float = SUMMED_SE, change_se: float = CHANGE_SE) -> ShapleyResult:
    """The first answer, which every finer level inherits: every later level only shares out
    its values. Enumerated when the memo makes that cheap (``AtomGames.enumeration`` ≤
    ``exact_forwards``). Else sampled with ``budget`` coalitions, the budget doubling until the
    answer is *settled* (``settled``: its top resolved, ΣSE and the summed change since the
    half budget ≤ ``tolerance``·Σ|φ|; after a doubling each SE holds its change) or
    ``stop`` says so; the proxy's exact coalitions double with it (its residual may be what
    leaves it unsettled). A doubling that reaches 2^M enumerates the game, and then the memo
    already holds every tile the samples ran. A replay costs only coalitions not played yet,
    and the decisions depend on values only, so a resumed run takes the same path. The SE it
    reports holds ``change_se`` of each player's change (the decisions hold all of it): the
    change between two nested budgets overstates the error of the larger one."""
    m = len(membership)
    if games.enumeration is not None and games.enumeration(membership) <= exact_forwards:
        budget = 2 ** m
    res, before = games.play(membership, m, budget, seed, stop, kwargs), None
    residual = games.residual_budget or residual_design(m)
    model_se = change = None
    while not (res.exact or budget >= 2 ** m or stop() is not None or settled(res, before, namable, tolerance)):
        budget, residual = min(2 * budget, 2 ** m), 2 * residual
        res, before = games.play(membership, m, budget, seed, stop, kwargs, residual), res
        if not res.exact:
            model_se, change = res.se, np.abs(res.values - before.values)
            res.se = np.maximum(model_se, change)
    if change is not None and not res.exact:
        res.se = np.maximum(model_se, change_se * change)
    return res


def settled(res: ShapleyResult, before: ShapleyResult | None, namable: np.ndarray | None, tolerance: float) -> bool:
    """Whether a sampled coarse answer may stand: its top drivers resolved
    (``display.resolved_count`` > 0), and both its summed SE and its summed change since the
    half budget (``before``) within ``tolerance`` of Σ|φ|. The change is the check that does not
    trust the model: on a conjunctive game a GP fitted to few coalitions can be sure and wrong
    (a held-out finding: 28 % summed error with its top resolved, ``benchmarks/heldout``)."""
    from ..display import resolved_count
    if before is None or np.isnan(res.se).any():
        return False
    total = float(np.abs(res.values).sum())
    change = float(np.abs(res.values - before.values).sum())
    return bool(resolved_count(res.values, res.se, namable)) and max(float(res.se.sum()), change) <= tolerance * total


def _without(res: TreeResult, pos: int, tree, games: AtomGames) -> float:
    """v(N ∖ p) for the player at ``pos``: every other current player present."""
    coalition = np.ones((1, len(res.nodes)), bool)
    coalition[0, pos] = False
    return float(node_game(games.game, tree.membership(res.nodes))(coalition)[0])


def _refinable(res: TreeResult, tree) -> list[int]:
    """Positions in ``res.nodes`` of players that have children and were not left whole."""
    return [i for i, n in enumerate(res.nodes) if tree.children(n) and n not in res.left_whole]


def _pick(res: TreeResult, tree, min_share: float, volumes: np.ndarray | None) -> int:
    """The next player to refine: the largest |φ|·volume (or |φ|) among the refinable players
    that carry ``min_share`` of Σ|φ| (``_next_reason`` has checked that one does)."""
    least = min_share * float(np.abs(res.values).sum())
    cand = [i for i in _refinable(res, tree) if abs(res.values[i]) >= least]
    size = (lambda i: 1.0) if volumes is None else (lambda i: float(volumes[res.nodes[i]]))
    return max(cand, key=lambda i: (abs(res.values[i]) * size(i), -i))


def _next_reason(res: TreeResult, tree, max_refinements: int, min_share: float) -> str | None:
    """Why refinement ends here, or None to go on."""
    if len(res.refined) >= max_refinements:
        return "max_refinements"
    cand = _refinable(res, tree)
    if not cand:
        return "left_whole" if res.left_whole else "finest"
    total = float(np.abs(res.values).sum())
    if total <= 0 or max(abs(res.values[i]) for i in cand) < min_share * total:
        return "small"
    return None


def refine(res: TreeResult, tree, pos: int, games: AtomGames, seed: int, stop, per_child: int, kwargs: dict,
           split: str = "proportional") -> None:
    """Replace the player at ``pos`` by its children, their values by ``split_value``."""
    node = res.nodes[pos]
    kids = tree.children(node)
    n = len(kids)
    inner = games.play(tree.membership(kids), n, level_budget(n, per_child), seed + len(res.games), stop, kwargs)
    values, se, scale = split_value(res.values[pos], res.se[pos], inner, split)
    res.nodes[pos:pos + 1] = kids
    res.values = np.concatenate([res.values[:pos], values, res.values[pos + 1:]])
    res.se = np.concatenate([res.se[:pos], se, res.se[pos + 1:]])
    res.refined.append(node)
    res.games.append(inner)
    res.game_nodes.append(kids)
    res.scales.append(scale)


def split_value(phi: float, se: float, inner: ShapleyResult, split: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The children's values and SEs from the parent's ``phi`` (± ``se``) and their game in
    the present context (``inner``), and the scale applied (None: the equal split).

    ``proportional``: φ_c = Sh_c(w_p)·φ_p / m_p, m_p = v(N) − v(N ∖ p), when φ_p and m_p have
    the same sign and φ_p / m_p ≤ ``MAX_SCALE``, else the equal split (``tree_shapley`` leaves
    such a player whole instead): where the image as it is carries under a quarter of p's
    value, its game says little about how the children share the rest, and scaling would
    multiply its errors; ``equal``: φ_c = Sh_c(w_p) + (φ_p − m_p)/n."""
    n = inner.values.size
    marginal = inner.full_value - inner.base_value
    scale = proportional_scale(phi, marginal) if split == "proportional" else None
    if scale is not None:
        share = inner.values / marginal                          # each child's share of the parent's value
        return inner.values * scale, np.sqrt((inner.se * scale) ** 2 + (share * se) ** 2), scale
    values = inner.values + (phi - marginal) / n
    return values, np.sqrt(inner.se ** 2 + (se / n) ** 2), None   # the parent's error shared equally (independent)


def proportional_scale(phi: float, marginal: float) -> float | None:
    """φ_p / m_p where the proportional split applies (same sign, at most ``MAX_SCALE``), else None."""
    if phi * marginal > 0 and abs(phi) <= MAX_SCALE * abs(marginal):
        return float(phi / marginal)
    return None
