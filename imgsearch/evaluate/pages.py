"""The template kinds of :mod:`.negatives`: a web page, a social post and a catalogue page.

Each page has a fixed chrome (header, navigation, sidebar, footer, icons, grid) drawn from the
design generator ``d``, photos in fixed slots, and per-image texts (headline, caption, product
names, prices, counts) drawn from ``rng``. Sizes are in a unit of 1 % of the page's width, so a
design keeps its proportions whatever its width.
"""

from __future__ import annotations

import cv2
import numpy as np

from .drawing import (
    BOLD,
    Colour,
    Logo,
    brand_name,
    cover,
    fit_inside,
    hsv_colour,
    ink,
    over,
    paste,
    product_name,
    put,
    rounded,
    shade,
)
from .overlays import FONTS, WORDS, random_colour, text_lines

__all__ = ["catalogue_sheet", "social_post", "web_page"]

Image = np.ndarray
Rng = np.random.Generator
_PLAIN = cv2.FONT_HERSHEY_SIMPLEX


def web_page(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A news page 480-544 px wide: a header bar (brand-coloured, or white with a brand rule) with
    the site's name and navigation, a sidebar on the left or right (2 text blocks and an ad) or
    none and a banner ad, a per-image headline, the photo fitted in a fixed slot (aspect 0.7-0.78,
    letterboxed in grey), a credit line, 2 per-image lines of text and a dark footer."""
    W, site = int(d.integers(480, 544, endpoint=True)), brand_name(d)
    font, brand = FONTS[int(d.integers(len(FONTS)))], hsv_colour(d, (0.5, 1), (0.3, 0.8))
    dark, sidebar = d.random() < 0.5, int(d.integers(3))  # sidebar on the left, on the right, none
    nav = "   ".join(str(w).capitalize() for w in d.choice(WORDS, size=4, replace=False))
    blocks = [(str(d.choice(WORDS)).upper(), text_lines(d, 3)) for _ in range(2)]
    ad, ad_colour = " ".join(d.choice(WORDS, size=2)).upper(), hsv_colour(d, (0.4, 0.9), (0.7, 1))
    aspect, paper, grey = d.uniform(0.7, 0.78), random_colour(d, 246, 255), (110, 110, 110)
    u = W / 100
    side_w, m, head = (round(21 * u) if sidebar < 2 else 0), round(2.5 * u), round(9 * u)
    top = head + (round(8 * u) if sidebar == 2 else 0)
    slot_w = W - side_w - (3 if side_w else 2) * m
    slot_h = round(slot_w * aspect)
    H = top + m + round(7 * u) + slot_h + round(11 * u) + round(6 * u)
    page = np.empty((H, W, 3), np.uint8)
    page[:] = paper
    page[:head] = brand if dark else paper
    if not dark:
        page[head - max(2, round(0.6 * u)) : head] = brand
    put(page, site.upper(), font, (m, u, 35 * u, 7 * u), ink(brand) if dark else brand)
    put(page, nav, BOLD, (40 * u, 3 * u, W - 40 * u - m, 3.5 * u), ink(brand) if dark else grey, 1)
    x0 = m + (side_w + m if sidebar == 0 else 0)
    sx = m if sidebar == 0 else W - m - side_w
    if sidebar == 2:
        cv2.rectangle(page, (m, head + round(u)), (W - m, top - round(u)), ad_colour, -1)
        put(page, ad + "  - SHOP NOW", font, (3 * m, head + 2 * u, W - 6 * m, 4 * u), ink(ad_colour), 0.5)
    else:
        y = top + m
        for title, lines in blocks:
            put(page, title, BOLD, (sx, y, side_w, 4 * u), brand)
            for k, line in enumerate(lines):
                put(page, line, _PLAIN, (sx, y + (5 + 3.2 * k) * u, side_w, 2.6 * u), grey)
            y += round(17 * u)
        cv2.rectangle(page, (sx, y), (sx + side_w, y + round(side_w * 0.8)), ad_colour, -1)
        put(page, "AD", BOLD, (sx + u, y + u, 5 * u, 2.5 * u), ink(ad_colour))
        put(page, ad, font, (sx + u, y + side_w * 0.25, side_w - 2 * u, side_w * 0.3), ink(ad_colour), 0.5)
    y = top + m
    put(page, " ".join(text_lines(rng, 2)).capitalize(), BOLD, (x0, y, slot_w, 6 * u), (20, 20, 20))
    y += round(7 * u)
    page[y : y + slot_h, x0 : x0 + slot_w] = shade(paper, 0.93)
    photo = fit_inside(photos[0], slot_w, slot_h)
    paste(page, photo, x0 + (slot_w - photo.shape[1]) // 2, y + (slot_h - photo.shape[0]) // 2)
    y += slot_h
    put(page, f"Photo: {site} / staff", _PLAIN, (x0, y + 0.5 * u, slot_w, 2.5 * u), grey)
    for k, line in enumerate(text_lines(rng, 2)):
        put(page, line.capitalize() + ".", _PLAIN, (x0, y + (4 + 3.2 * k) * u, slot_w, 2.8 * u), (50, 50, 50))
    page[H - round(6 * u) :] = (34, 34, 38)
    footer = f"Copyright 2024 {site}   About   Contact   Privacy"
    put(page, footer, _PLAIN, (m, H - 5 * u, W - 2 * m, 4 * u), (200, 200, 200))
    return page


_T = np.linspace(0, 2 * np.pi, 40)
_HEART = np.c_[
    16 * np.sin(_T) ** 3, 5 * np.cos(2 * _T) + 2 * np.cos(3 * _T) + np.cos(4 * _T) - 13 * np.cos(_T)
]
_ICONS = {  # the action bar's icons as polylines in a unit square
    "heart": [_HEART / 34 + (0.5, 0.45)],
    "comment": [np.c_[0.5 + 0.45 * np.cos(t), 0.45 + 0.4 * np.sin(t)] for t in [np.linspace(0.6, 6.6, 30)]]
    + [np.array([(0.9, 0.6), (1, 0.95), (0.7, 0.8)])],
    "send": [
        np.array([(0, 0.4), (1, 0), (0.6, 1), (0.45, 0.55), (0, 0.4)]),
        np.array([(0.45, 0.55), (1, 0)]),
    ],
    "save": [np.array([(0.15, 0), (0.85, 0), (0.85, 1), (0.5, 0.7), (0.15, 1), (0.15, 0)])],
    "repost": [
        np.array([(0.1, 0.6), (0.1, 0.2), (0.85, 0.2)]),
        np.array([(0.7, 0.05), (0.85, 0.2), (0.7, 0.35)]),
        np.array([(0.9, 0.4), (0.9, 0.8), (0.15, 0.8)]),
        np.array([(0.3, 0.65), (0.15, 0.8), (0.3, 0.95)]),
    ],
    "share": [
        np.array([(0.5, 0.65), (0.5, 0)]),
        np.array([(0.25, 0.25), (0.5, 0), (0.75, 0.25)]),
        np.array([(0.1, 0.5), (0.1, 1), (0.9, 1), (0.9, 0.5)]),
    ],
}


def _icon(canvas: Image, name: str, x: float, y: float, s: float, colour: Colour) -> None:
    lines = [np.rint((p * s + (x, y)) * 4).astype(np.int32) for p in _ICONS[name]]
    cv2.polylines(canvas, lines, False, colour, max(1, round(s / 12)), cv2.LINE_AA, shift=2)


def social_post(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A post 400-520 px wide, light or dark: a profile row (avatar disc with the initial, name,
    verified badge or not, "more" dots) and either the photo edge to edge (aspect clamped to
    0.8-1.25), an icon bar, a like count and a caption, or a handle and caption line over the photo
    with rounded corners (aspect 0.56-1.25) and an icon bar with counts; per image: the caption,
    the counts."""
    W, name, style = int(d.integers(400, 520, endpoint=True)), brand_name(d), int(d.integers(2))
    dark, verified = d.random() < 0.3, d.random() < 0.5
    avatar, ring = hsv_colour(d, (0.4, 1), (0.5, 0.9)), hsv_colour(d, (0.7, 1), (0.8, 1))
    handle, when = f"@{name.lower()}_{int(d.integers(10, 99))}", str(d.choice(["2h", "5h", "1d", "3d"]))
    paper, fg, grey = (
        ((16, 16, 18), (240, 240, 240), (130, 130, 135))
        if dark
        else ((255, 255, 255), (20, 20, 20), (120, 120, 125))
    )
    u, photo = W / 100, photos[0]
    ratio = min(max(photo.shape[0] / photo.shape[1], 0.8 if style == 0 else 0.56), 1.25)
    pw = W if style == 0 else round(W - 17 * u)
    ph = round(pw * ratio)
    caption, counts = " ".join(text_lines(rng, 2)), [f"{int(rng.integers(2, 999))}" for _ in range(3)]
    post = np.empty((ph + round((33 if style == 0 else 30) * u), W, 3), np.uint8)
    post[:] = paper
    r = round(4.5 * u)
    cx = cy = round(3 * u) + r
    if style == 0:
        cv2.circle(post, (cx, cy), r + max(2, round(0.8 * u)), ring, -1, cv2.LINE_AA)
    cv2.circle(post, (cx, cy), r, avatar, -1, cv2.LINE_AA)
    put(post, name[0], BOLD, (cx - r / 2, cy - r * 0.7, r, 1.4 * r), ink(avatar), 0.5)
    nx = cx + r + 2.5 * u
    name_w = put(post, name, BOLD, (nx, cy - (4.5 if style else 2.5) * u, 40 * u, 5 * u), fg)
    if verified:
        vx, vy = nx + name_w + 2.2 * u, cy - (2 if style else 0) * u
        cv2.circle(post, (round(vx), round(vy)), round(1.5 * u), (29, 155, 240), -1, cv2.LINE_AA)
        tick = np.rint(
            [(vx - 0.7 * u, vy), (vx - 0.1 * u, vy + 0.6 * u), (vx + 0.8 * u, vy - 0.6 * u)]
        ).astype(np.int32)
        cv2.polylines(post, [tick], False, (255, 255, 255), 1, cv2.LINE_AA)
    for k in range(3):
        cv2.circle(post, (round(W - (4 + 1.6 * k) * u), cy), max(1, round(0.4 * u)), fg, -1, cv2.LINE_AA)
    if style == 0:
        y = round(15 * u)
        paste(post, cover(photo, pw, ph), 0, y)
        y += ph
        for k, icon in enumerate(("heart", "comment", "send")):
            _icon(post, icon, (3 + 9 * k) * u, y + 2.5 * u, 6 * u, fg)
        _icon(post, "save", W - 8 * u, y + 2.5 * u, 6 * u, fg)
        put(post, f"{counts[0]} likes", BOLD, (3 * u, y + 10 * u, 40 * u, 3.5 * u), fg)
        put(post, f"{name} {caption}", _PLAIN, (3 * u, y + 14 * u, W - 6 * u, 3.5 * u), fg)
        put(post, f"{when.upper()} AGO", _PLAIN, (3 * u, y + 18 * u, 20 * u, 2.5 * u), grey)
    else:
        put(post, f"{handle} - {when}", _PLAIN, (nx, cy + 0.5 * u, 45 * u, 3.5 * u), grey)
        put(post, caption.capitalize(), _PLAIN, (nx, 13 * u, W - nx - 3 * u, 4 * u), fg)
        x, y = round(nx), round(19 * u)
        card = np.zeros((ph, pw), np.uint8)
        rounded(card, 0, 0, pw - 1, ph - 1, round(3 * u), (255,))
        roi = post[y : y + ph, x : x + pw]
        roi[:] = np.rint(roi + (cover(photo, pw, ph) - roi.astype(np.float32)) * (card[..., None] / 255.0))
        for k, icon in enumerate(("comment", "repost", "heart", "share")):
            _icon(post, icon, x + k * 21 * u, y + ph + 3 * u, 4.5 * u, grey)
            if k < 3:
                put(post, counts[k], _PLAIN, (x + (k * 21 + 6) * u, y + ph + 3 * u, 10 * u, 4 * u), grey)
    return post


def catalogue_sheet(d: Rng, photos: list[Image], rng: Rng) -> Image:
    """A catalogue page 480-560 px wide: a header (brand band with the logo on a plate, or white
    with a brand rule) with a season's title, a 2 x 2 grid of the 4 photos (aspect 0.7-0.95) on
    cards or flat, each with a per-image product name and price (in a badge on the photo with an
    item number, or under the name), and a footer with the web address and a page number."""
    W, logo = int(d.integers(480, 560, endpoint=True)), Logo.draw_from(d)
    banded, cards, badge = d.random() < 0.5, d.random() < 0.5, d.random() < 0.5
    title = f"{d.choice(['spring', 'summer', 'autumn', 'winter', 'holiday'])} collection 2024".upper()
    currency, aspect, font = (
        str(d.choice(["$", "EUR "])),
        d.uniform(0.7, 0.95),
        FONTS[int(d.integers(len(FONTS)))],
    )
    brand, accent = logo.colours
    paper = (236, 236, 234) if cards else (252, 251, 248)
    u = W / 100
    m, head = round(3 * u), round(14 * u)
    cw = (W - 3 * m) // 2
    ch = round(cw * aspect)
    cell = ch + round(12 * u)
    H = head + m + 2 * (cell + m) + round(6 * u)
    page = np.empty((H, W, 3), np.uint8)
    page[:] = paper
    if banded:
        page[:head] = brand
    else:
        page[head - max(2, round(0.6 * u)) : head] = brand
    mark = logo.fit(40 * u, 10 * u)
    if banded:  # on a paper plate, as the logo is in the band's colour
        rounded(
            page,
            m - round(u),
            2 * round(u),
            m + mark.shape[1] + round(u),
            4 * round(u) + mark.shape[0],
            round(u),
            paper,
        )
    over(page, mark, m, 3 * round(u))
    put(page, title, font, (50 * u, 4 * u, W - 50 * u - m, 6 * u), ink(brand) if banded else brand, 1)
    for i, photo in enumerate(photos):
        x, y = m + (i % 2) * (cw + m), head + m + (i // 2) * (cell + m)
        if cards:
            cv2.rectangle(page, (x + 2, y + 2), (x + cw + 2, y + cell + 2), (205, 205, 205), -1)
            cv2.rectangle(page, (x, y), (x + cw, y + cell), (255, 255, 255), -1)
        paste(page, cover(photo, cw, ch), x, y)
        price = f"{currency}{int(rng.integers(5, 250))}.{int(rng.choice([0, 49, 95, 99])):02d}"
        put(page, product_name(rng), BOLD, (x + u, y + ch + u, cw - 2 * u, 5 * u), (30, 30, 30))
        if badge:
            r = round(6 * u)
            cv2.circle(page, (x + cw - r - round(u), y + r + round(u)), r, accent, -1, cv2.LINE_AA)
            put(page, price, BOLD, (x + cw - 2 * r, y + 0.6 * r + u, 1.6 * r, 0.8 * r), ink(accent), 0.5)
            put(
                page,
                f"item no. {1000 + 37 * i}",
                _PLAIN,
                (x + u, y + ch + 6.5 * u, cw / 2, 3.5 * u),
                (120, 120, 120),
            )
        else:
            put(page, price, BOLD, (x + u, y + ch + 6.5 * u, cw / 2, 4.5 * u), brand)
    cv2.line(page, (m, H - round(6 * u)), (W - m, H - round(6 * u)), brand, 1)
    footer = f"www.{logo.name.lower()}.com   prices valid while stocks last"
    put(page, footer, _PLAIN, (m, H - 5 * u, 70 * u, 3.5 * u), (90, 90, 90))
    put(page, "page 12", _PLAIN, (W - 20 * u, H - 5 * u, 20 * u - m, 3.5 * u), (90, 90, 90), 1)
    return page
