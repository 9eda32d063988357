// The service's web page as a user drives it, in Debian's Chromium: paste the key, pick the
// gallery, enrol a person from a photo, drop a group photo and read the names on the faces,
// remove a person, run a style job to the end. Screenshots go to ARTEFACTS.
//
// node page.mjs BASE_URL KEY ARTEFACTS ENROL_PHOTO GROUP_PHOTO CONTENT PAINTING
import { chromium } from "playwright-core";

const [base, key, artefacts, enrolPhoto, groupPhoto, content, painting] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (page, why) => {
  await page.screenshot({ path: `${artefacts}/failure.png`, fullPage: true });
  throw new Error(why);
};
try {
  // A phone-sized window: the page must be usable there.
  const page = await browser.newPage({ viewport: { width: 412, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(base + "/");
  await page.fill("#key", key);
  await page.click("#save-key");
  await page.waitForFunction(() => document.querySelector("#gallery").options.length > 0);
  await page.selectOption("#gallery", "family");

  await page.fill("#enrol-name", "Ada");
  await page.setInputFiles("#enrol-file", enrolPhoto);
  await page.click("#enrol-go");
  await page.waitForSelector("#enrol-status.ok", { timeout: 60000 });
  await page.waitForSelector("#people-list li:has-text('Ada')");

  await page.setInputFiles("#identify-file", groupPhoto);
  await page.waitForSelector("#identify-status.ok, #identify-status.bad", { timeout: 60000 });
  const status = await page.textContent("#identify-status");
  const names = await page.$$eval("#identify-table td.name", (tds) => tds.map((t) => t.textContent));
  await page.screenshot({ path: `${artefacts}/identify.png`, fullPage: true });
  if (!status.includes("2 faces found, 1 recognised") || !names.includes("Ada") || !names.includes("unknown")) {
    await fail(page, `identify showed "${status}" with names ${JSON.stringify(names)}`);
  }

  // Remove someone (the page asks first).
  page.once("dialog", (d) => d.accept());
  await page.click("#people-list li:has-text('Bob') button");
  await page.waitForFunction(() => !document.querySelector("#people-list").textContent.includes("Bob"));

  await page.setInputFiles("#style-content", content);
  await page.setInputFiles("#style-painting", painting);
  await page.fill("#style-size", "96");
  await page.fill("#style-iters", "8");
  await page.click("#style-go");
  await page.waitForSelector("#style-status.ok, #style-status.bad", { timeout: 120000 });
  if ((await page.textContent("#style-status")) !== "Done.") {
    await fail(page, `style job: ${await page.textContent("#style-status")}`);
  }
  const width = await page.$eval("#style-result", (img) => img.naturalWidth);
  if (width !== 96) await fail(page, `style result is ${width} px wide, not 96`);
  await page.screenshot({ path: `${artefacts}/style.png`, fullPage: true });

  // A wrong key is said so, in words.
  await page.fill("#key", "cnn_wrong");
  await page.click("#save-key");
  await page.waitForSelector("#whoami.bad");
  const refused = await page.textContent("#whoami");
  if (!refused.includes("unknown API key")) await fail(page, `wrong key showed "${refused}"`);
  if (problems.length) await fail(page, `page errors: ${problems.join("; ")}`);
  console.log(JSON.stringify({ status, names }));
} finally {
  await browser.close();
}
